//! `dlq-dashboard user ...` and `dlq-dashboard token ...`: manage the users file. A running
//! server notices the change on its next request.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::clock::{iso, now_ms};
use crate::error::{Error, Result};

use super::password;
use super::role::Role;
use super::token;
use super::users::{check_name, Token, User, UsersFile};

/// The users file a `user` or `token` subcommand works on.
#[derive(Debug, Clone, Args)]
pub struct UsersFileArg {
    /// The users file (JSON, mode 0600); created by the first `user add`.
    #[arg(long = "users", env = "DLQ_USERS")]
    pub users: PathBuf,
}

/// `dlq-dashboard user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with a role; the password comes from a prompt, or from standard input.
    Add {
        /// The name to sign in with.
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Remove a user (their sessions end with their next request).
    Remove {
        /// The user's name.
        name: String,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// List the users and their roles.
    List {
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Change a user's password (from a prompt or standard input); their sessions end.
    Passwd {
        /// The user's name.
        name: String,
        #[command(flatten)]
        file: UsersFileArg,
    },
}

/// `dlq-dashboard token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line, and only its hash is kept.
    Create {
        /// viewer, operator or admin.
        #[arg(long)]
        role: Role,
        /// A name for it (the audit log shows it; `token revoke` takes it).
        #[arg(long)]
        name: String,
        /// How long it works, e.g. 30d or 12h; without it, until revoked.
        #[arg(long, value_parser = super::duration::parse)]
        expires: Option<Duration>,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// List the tokens (names, roles, expiry; never the tokens themselves).
    List {
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        file: UsersFileArg,
    },
}

/// Run a `user` subcommand.
pub fn user(command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add { name, role, file } => {
            check_name(&name)?;
            let mut users = UsersFile::load(&file.users)?;
            if users.user(&name).is_some() {
                return Err(Error::Conflict(format!(
                    "A user {name} exists already; change the password with `user passwd {name}`, or remove it first."
                )));
            }
            let hash = password::hash(&password::read_new(&name)?)?;
            users.users.push(User {
                name: name.clone(),
                role,
                password: hash,
            });
            users.save(&file.users)?;
            println!("Added {name} ({role}) to {}.", file.users.display());
        }
        UserCommand::Remove { name, file } => {
            let mut users = UsersFile::load(&file.users)?;
            let before = users.users.len();
            users.users.retain(|u| u.name != name);
            if users.users.len() == before {
                return Err(no_user(&name));
            }
            users.save(&file.users)?;
            println!("Removed {name}; their sessions end with their next request.");
        }
        UserCommand::List { file } => {
            let users = UsersFile::load(&file.users)?;
            if users.users.is_empty() {
                println!("No users in {}; add one with `dlq-dashboard user add NAME --role admin --users {}`.", file.users.display(), file.users.display());
            }
            for u in &users.users {
                println!("{}\t{}", u.name, u.role);
            }
        }
        UserCommand::Passwd { name, file } => {
            let mut users = UsersFile::load(&file.users)?;
            if users.user(&name).is_none() {
                return Err(no_user(&name));
            }
            let hash = password::hash(&password::read_new(&name)?)?;
            if let Some(u) = users.users.iter_mut().find(|u| u.name == name) {
                u.password = hash;
            }
            users.save(&file.users)?;
            println!("Changed the password of {name}; their other sessions have ended.");
        }
    }
    Ok(())
}

fn no_user(name: &str) -> Error {
    Error::NotFound(format!(
        "There is no user {name}; `dlq-dashboard user list` shows who there is."
    ))
}

/// Run a `token` subcommand.
pub fn token(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            role,
            name,
            expires,
            file,
        } => {
            check_name(&name)?;
            let mut users = UsersFile::load(&file.users)?;
            if users.tokens.iter().any(|t| t.name == name) {
                return Err(Error::Conflict(format!(
                    "A token {name} exists already; revoke it first or choose another name."
                )));
            }
            let secret = token::generate();
            let now = now_ms();
            let expires = expires
                .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
            users.tokens.push(Token {
                name: name.clone(),
                role,
                digest: token::digest(&secret),
                created: now,
                expires,
            });
            users.save(&file.users)?;
            let until = expires
                .map(|e| format!("until {}", iso(e)))
                .unwrap_or_else(|| "without expiry".into());
            println!("Token {name} ({role}, {until}) created. It is shown only this once; send it as Authorization: Bearer TOKEN.");
            println!("{secret}");
        }
        TokenCommand::List { file } => {
            let users = UsersFile::load(&file.users)?;
            if users.tokens.is_empty() {
                println!("No tokens in {}.", file.users.display());
            }
            let now = now_ms();
            for t in &users.tokens {
                let state = match t.expires {
                    Some(e) if e <= now => format!("expired {}", iso(e)),
                    Some(e) => format!("expires {}", iso(e)),
                    None => "no expiry".into(),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    t.name,
                    t.role,
                    iso(t.created)
                );
            }
        }
        TokenCommand::Revoke { name, file } => {
            let mut users = UsersFile::load(&file.users)?;
            let before = users.tokens.len();
            users.tokens.retain(|t| t.name != name);
            if users.tokens.len() == before {
                return Err(Error::NotFound(format!(
                    "There is no token {name}; `dlq-dashboard token list` shows the tokens."
                )));
            }
            users.save(&file.users)?;
            println!("Revoked {name}; it is refused from the next request on.");
        }
    }
    Ok(())
}
