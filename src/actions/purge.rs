//! Purge as an action: freeze a selection as a purge in 'preview' (counts per topic and per
//! status, refusals with reasons), confirm it by its id (audited in the same transaction),
//! then apply it a chunk at a time; undo it as a whole or per message, and erase the
//! payloads of its records. The SQL is `store::purges`; what is shared with replay (the
//! selection, its freezing, refusals, preview expiry, audit) is the same code.
//!
//! Applying, undoing and erasing run as tasks of their own: a request that waits for one
//! and is dropped (the browser closed) does not stop it half-way, and a purge confirmed
//! before a restart is applied to the end when the dashboard starts again
//! ([`Actions::resume_purges`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::selection::{self, Selection};
use super::{new_action_id, Actions, Actor, Refusal, PREVIEW_TTL_MS, REFUSALS_LISTED};
use crate::error::{Error, Result};
use crate::states::PurgeStatus;
use crate::store::audit::{self, NewEntry};
use crate::store::health::{Backoff, WriteHealth, Writer};
use crate::store::purges::{self, ChunkSizer, NewPurge, Purge};
use crate::store::{search, wal};

/// The longest reason a purge takes, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What the operator asks for beside the selection.
#[derive(Debug, Clone, Default)]
pub struct PurgeRequest {
    /// Why, in the operator's words.
    pub reason: Option<String>,
    /// Erase the payloads once purged.
    pub erase: bool,
}

/// What a confirmed preview would do.
#[derive(Debug, Clone, Serialize)]
pub struct PurgePreview {
    /// The preview's id: confirm it to purge exactly this selection.
    pub preview_id: String,
    /// Messages that will be purged.
    pub count: i64,
    /// Messages per DLQ topic.
    pub by_topic: BTreeMap<String, i64>,
    /// Messages per current status.
    pub by_status: BTreeMap<String, i64>,
    /// Refused messages (the first 1,000).
    pub refused: Vec<Refusal>,
    /// All refused messages.
    pub refused_count: i64,
    /// Whether the payloads are erased too (which cannot be undone).
    pub erase: bool,
    /// The operator's reason.
    pub reason: Option<String>,
    /// Whether the selection is every message: confirming takes `"everything": true`.
    pub everything: bool,
    /// Whether the purge can be undone once confirmed.
    pub undo_possible: bool,
    /// When the preview expires unless confirmed.
    pub expires_at: String,
}

/// What a confirmed purge did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeDone {
    /// Purge id.
    pub id: String,
    /// Messages purged.
    pub purged: i64,
    /// Messages refused, at preview and when applied.
    pub refused: i64,
    /// Messages whose payload was erased.
    pub erased: i64,
}

/// What an undo or an erase did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeChange {
    /// Purge id.
    pub id: String,
    /// Messages restored (undo) or erased (erase).
    pub changed: i64,
    /// Listed messages left as they were (not held by this purge, already restored or
    /// erased).
    pub refused: i64,
    /// Whether the erased bytes are gone from the files' logs too (false while a reader
    /// held old pages; the next checkpoint removes them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_truncated: Option<bool>,
}

impl From<purges::PurgeEntry> for Refusal {
    fn from(r: purges::PurgeEntry) -> Self {
        Refusal {
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            generation: r.generation,
            reason: r.refusal.unwrap_or_default(),
        }
    }
}

/// The error for a purge id that names nothing.
pub fn unknown_purge(id: &str) -> Error {
    Error::NotFound(format!("There is no purge {id}."))
}

/// Validate a reason: at most [`MAX_REASON_CHARS`] characters, blank means none.
pub fn reason(asked: Option<&serde_json::Value>) -> Result<Option<String>> {
    match asked {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => {
            let s = s.trim();
            let chars = s.chars().count();
            if chars > MAX_REASON_CHARS {
                Err(Error::BadRequest(format!(
                    "The reason has {chars} characters; a reason takes at most {MAX_REASON_CHARS}."
                )))
            } else if s.is_empty() {
                Ok(None)
            } else {
                Ok(Some(s.to_string()))
            }
        }
        Some(_) => Err(Error::BadRequest("Field 'reason' must be text.".into())),
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl Actions {
    /// Freeze a selection as a purge preview. Nothing is purged before [`purge_confirm`].
    ///
    /// [`purge_confirm`]: Actions::purge_confirm
    pub async fn purge_preview(
        &self,
        selection: Selection,
        request: PurgeRequest,
        actor: &Actor,
    ) -> Result<PurgePreview> {
        let frozen = selection::freeze(&self.pool, &selection).await?;
        let everything = matches!(&selection, Selection::Filter(f) if f.selects_everything());
        let now = crate::clock::now_ms();
        // Unconfirmed previews of earlier requests go first, so they never pile up.
        purges::delete_stale_previews(&self.pool, now - PREVIEW_TTL_MS).await?;
        let purge = NewPurge {
            id: new_action_id('p'),
            actor: actor.name.clone(),
            selection: selection.to_json().to_string(),
            reason: request.reason,
            erase: request.erase,
            everything,
            created_at: now,
        };
        purges::create(&self.pool, &purge).await?;
        // The selection is frozen a window of record ids at a time, each in a transaction
        // of its own, so that a million-record preview never holds the writer long.
        let (mut after, last) = frozen.id_range();
        let mut items = 0;
        let mut sizer = ChunkSizer::preview_ids();
        while after < last {
            let through = (after + sizer.size()).min(last);
            let (added, held) =
                purges::add_preview_window(&self.pool, &purge.id, frozen.source(), after, through)
                    .await?;
            items += added;
            sizer.held(through - after, held);
            after = through;
        }
        if items == 0 {
            purges::delete_preview(&self.pool, &purge.id).await?;
            return Err(frozen.nothing_matches());
        }
        // Messages of topics outside the actor's scope are refused, each with the reason,
        // so the preview shows what the role may not purge.
        if actor.scope.is_limited() {
            for topic in purges::preview_topics(&self.pool, &purge.id).await? {
                if !actor.scope.allows(&topic) {
                    let reason = actor.scope.refusal(&topic);
                    purges::refuse_topic(&self.pool, &purge.id, &topic, &reason).await?;
                }
            }
        }
        purges::finish_preview(&self.pool, &purge.id).await?;
        self.purge_preview_of(&purge.id).await
    }

    /// The preview of a purge (or what a confirmed one was asked to do).
    pub async fn purge_preview_of(&self, id: &str) -> Result<PurgePreview> {
        let purge = self.find_purge(id, true).await?;
        let refused = purges::refusals(&self.pool, id, REFUSALS_LISTED)
            .await?
            .into_iter()
            .map(Refusal::from)
            .collect();
        Ok(PurgePreview {
            preview_id: purge.id.clone(),
            count: purge.total,
            by_topic: purge.by_topic.0.clone(),
            by_status: purge.by_status.0.clone(),
            refused,
            refused_count: purge.refused,
            erase: purge.erase,
            reason: purge.reason.clone(),
            everything: purge.everything,
            undo_possible: !purge.erase,
            expires_at: crate::clock::iso(purge.created_at + PREVIEW_TTL_MS),
        })
    }

    /// A purge by id; previews only when `previews` is set.
    pub async fn find_purge(&self, id: &str, previews: bool) -> Result<Purge> {
        purges::purge(&self.pool, id)
            .await?
            .filter(|p| {
                previews || !matches!(p.status, PurgeStatus::Building | PurgeStatus::Preview)
            })
            .ok_or_else(|| unknown_purge(id))
    }

    /// Confirm a purge preview and apply it. The confirmation and its audit entry are one
    /// transaction; the records are then purged a chunk at a time, and their payloads erased
    /// when the purge asks for it. `everything` is the operator's extra yes for a purge of
    /// every message; `changed` replaces the previewed reason and erasure.
    pub async fn purge_confirm(
        &self,
        id: &str,
        everything: bool,
        changed: Option<PurgeRequest>,
        actor: &Actor,
    ) -> Result<PurgeDone> {
        let mut tx = crate::store::begin_write(&self.pool).await?;
        let mut purge = purges::purge(&mut *tx, id)
            .await?
            .ok_or_else(|| unknown_purge(id))?;
        match purge.status {
            PurgeStatus::Preview => {}
            PurgeStatus::Building => {
                return Err(Error::Conflict(format!(
                    "Purge {id} is still being previewed; confirm it when its preview is shown."
                )))
            }
            other => {
                return Err(Error::Conflict(format!(
                    "Purge {id} was already confirmed (it is {}).",
                    other.words()
                )))
            }
        }
        let now = crate::clock::now_ms();
        if purge.created_at + PREVIEW_TTL_MS < now {
            return Err(Error::Conflict(format!(
                "The preview of purge {id} expired; preview the purge again."
            )));
        }
        if purge.everything && !everything {
            return Err(Error::BadRequest(format!(
                "Purge {id} selects every message ({}). Confirm that this is meant with \"everything\": true (on the page: tick \"Yes, every message\").",
                purge.total
            )));
        }
        if purge.total == 0 {
            return Err(Error::BadRequest(
                "Every message of this selection is refused, so there is nothing to purge; the preview says why.".into(),
            ));
        }
        // A preview made by someone else is confirmed only within the confirmer's topics.
        if let Err(refusal) = actor
            .scope
            .check(purge.by_topic.0.keys().map(String::as_str))
        {
            drop(tx);
            return Err(self.refused(actor, "purge", Some(id), refusal).await);
        }
        // A page's confirm form may change the reason and the erasure (not the selection,
        // which is what the preview froze).
        if let Some(request) = changed {
            purges::set_request(&mut *tx, id, request.reason.as_deref(), request.erase).await?;
            purge.reason = request.reason;
            purge.erase = request.erase;
        }
        purges::transition(
            &mut *tx,
            id,
            PurgeStatus::Preview,
            PurgeStatus::Applying,
            now,
        )
        .await?;
        let summary = format!(
            "Purge of {} message{} in {}{}{}.",
            purge.total,
            plural(purge.total),
            purge
                .by_topic
                .0
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if purge.erase { ", payloads erased" } else { "" },
            purge
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
        );
        audit::append(
            &mut *tx,
            &NewEntry {
                at: now,
                actor: &actor.name,
                mode: actor.mode(),
                action: "purge.start",
                job_id: Some(id),
                summary: &summary,
                detail: &serde_json::json!({
                    "selection": purge.selection.0,
                    "total": purge.total,
                    "refused": purge.refused,
                    "by_topic": purge.by_topic.0,
                    "by_status": purge.by_status.0,
                    "reason": purge.reason,
                    "erase": purge.erase,
                }),
            },
        )
        .await?;
        // The chunks take the writer in turns of their own.
        tx.commit().await?;
        self.apply_purge(id, actor).await
    }

    /// Apply a confirmed purge to its end, in a task of its own.
    async fn apply_purge(&self, id: &str, actor: &Actor) -> Result<PurgeDone> {
        let (pool, id_owned, actor) = (self.pool.clone(), id.to_string(), actor.clone());
        let task = tokio::spawn(async move {
            let mut sizer = ChunkSizer::items();
            let mut retry = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
            loop {
                // Each chunk is one transaction that re-checks its records, so a chunk that
                // met a full disk (or a read-only or locked file) is simply tried again once
                // the cause may be gone: the purge waits rather than stopping half-applied
                // until the next restart.
                let chunk = match purges::apply_chunk(&pool, &id_owned, sizer.size()).await {
                    Ok(chunk) => {
                        retry.succeeded();
                        WriteHealth::of(&pool).ok(Writer::Purge);
                        chunk
                    }
                    Err(e) if e.write_fault().is_some() => {
                        WriteHealth::of(&pool).failed(Writer::Purge, &e);
                        let pause = retry.failed();
                        tracing::warn!(purge = %id_owned, error = %e, retry_in = ?pause, "applying a purge chunk failed; retrying");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if chunk.through.is_none() {
                    break;
                }
                sizer.held(chunk.done + chunk.refused, chunk.held);
                tokio::task::yield_now().await;
            }
            let purge = purges::purge(&pool, &id_owned)
                .await?
                .ok_or_else(|| unknown_purge(&id_owned))?;
            if purge.erase {
                erase_all(&pool, &purge, None, &actor).await?;
            }
            let now = crate::clock::now_ms();
            purges::transition(
                &pool,
                &id_owned,
                PurgeStatus::Applying,
                PurgeStatus::Applied,
                now,
            )
            .await?;
            Ok::<_, Error>(())
        });
        join(task).await?;
        let purge = self.find_purge(id, false).await?;
        Ok(PurgeDone {
            id: purge.id.clone(),
            purged: purge.purged,
            refused: purge.refused + purge.skipped,
            erased: purge.erased,
        })
    }

    /// Apply to their end the purges confirmed before a restart.
    pub async fn resume_purges(&self) -> Result<()> {
        for purge in purges::purges_in(&self.pool, PurgeStatus::Applying).await? {
            tracing::info!(purge = %purge.id, "applying a purge confirmed before the restart");
            // The erase at its end is the confirmer's, whose mode is not stored with the
            // purge: the audit entry keeps the name.
            self.apply_purge(&purge.id, &Actor::unlimited(&purge.actor))
                .await?;
        }
        Ok(())
    }

    /// Undo a purge: its records (all, or the listed ones) get back the status they had when
    /// purged. Erased records cannot be restored.
    pub async fn purge_undo(
        &self,
        id: &str,
        messages: Option<Vec<selection::MessageRef>>,
        actor: &Actor,
    ) -> Result<PurgeChange> {
        let (purge, only, listed_refused, holdable) = self
            .held_by(id, messages.as_deref(), "undone", "undo")
            .await?;
        self.check_scope(
            actor,
            "undo",
            Some(id),
            scope_topics(&purge, messages.as_deref()),
        )
        .await?;
        let pool = self.pool.clone();
        let id_owned = id.to_string();
        let task = tokio::spawn(async move {
            let mut restored = 0;
            let mut sizer = ChunkSizer::items();
            match only {
                Some(held) => {
                    let mut rest = &held[..];
                    while !rest.is_empty() {
                        let (ids, next) = rest.split_at(rest.len().min(sizer.size() as usize));
                        let chunk = purges::undo_chunk(&pool, &id_owned, 0, 0, Some(ids)).await?;
                        restored += chunk.done;
                        sizer.held(ids.len() as i64, chunk.held);
                        rest = next;
                    }
                }
                None => {
                    let mut after = 0;
                    loop {
                        let chunk =
                            purges::undo_chunk(&pool, &id_owned, after, sizer.size(), None).await?;
                        restored += chunk.done;
                        match chunk.through {
                            Some(t) => after = t,
                            None => break,
                        }
                        sizer.held(chunk.done, chunk.held);
                        tokio::task::yield_now().await;
                    }
                }
            }
            Ok::<_, Error>(restored)
        });
        let restored = join(task).await?;
        if restored == 0 {
            return Err(Error::Conflict(format!(
                "The messages of purge {id} that are still purged are gone from the broker (reclaimed, or deleted by retention), so they can no longer be restored."
            )));
        }
        let listed_refused = listed_refused + holdable - restored;
        let summary = format!(
            "Undo of purge {id}: {restored} message{} restored to the status they had before.",
            plural(restored)
        );
        audit::append(
            &self.pool,
            &NewEntry {
                at: crate::clock::now_ms(),
                actor: &actor.name,
                mode: actor.mode(),
                action: "purge.undo",
                job_id: Some(id),
                summary: &summary,
                detail: &serde_json::json!({
                    "restored": restored,
                    "refused": listed_refused,
                    "messages": messages,
                }),
            },
        )
        .await?;
        Ok(PurgeChange {
            id: id.to_string(),
            changed: restored,
            refused: listed_refused,
            logs_truncated: None,
        })
    }

    /// Erase the payloads, headers and stack traces of a purge's records (all, or the
    /// listed ones) from the index and its search file. Cannot be undone.
    pub async fn purge_erase(
        &self,
        id: &str,
        messages: Option<Vec<selection::MessageRef>>,
        actor: &Actor,
    ) -> Result<PurgeChange> {
        let (purge, only, listed_refused, _) = self
            .held_by(id, messages.as_deref(), "erased", "erase")
            .await?;
        self.check_scope(
            actor,
            "erase",
            Some(id),
            scope_topics(&purge, messages.as_deref()),
        )
        .await?;
        let (pool, actor_owned) = (self.pool.clone(), actor.clone());
        let task =
            tokio::spawn(
                async move { erase_all(&pool, &purge, only.as_deref(), &actor_owned).await },
            );
        let (erased, truncated) = join(task).await?;
        Ok(PurgeChange {
            id: id.to_string(),
            changed: erased,
            refused: listed_refused,
            logs_truncated: Some(truncated),
        })
    }

    /// What an undo or erase of a purge applies to: the purge, the listed messages it still
    /// holds (None: all it holds), how many listed ones it does not hold, and how many it can
    /// change; a conflict with the reason when that is none.
    async fn held_by(
        &self,
        id: &str,
        messages: Option<&[selection::MessageRef]>,
        done: &str,
        verb: &str,
    ) -> Result<(Purge, Option<Vec<i64>>, i64, i64)> {
        let purge = self.settled_purge(id, done).await?;
        let (only, listed_refused) = match messages {
            None => (None, 0),
            Some(list) => {
                let ids = self.listed_ids(list).await?;
                let (held, others) = purges::split_held(&self.pool, id, &ids).await?;
                (Some(held), others)
            }
        };
        let holdable = match &only {
            Some(held) => held.len() as i64,
            None => purge.still_purged() - purge.erased,
        };
        if holdable <= 0 {
            return Err(Error::Conflict(nothing_held(
                &purge,
                messages.is_some(),
                verb,
            )));
        }
        Ok((purge, only, listed_refused, holdable))
    }

    /// A confirmed purge that is done applying, for an undo or erase.
    async fn settled_purge(&self, id: &str, verb: &str) -> Result<Purge> {
        let purge = self.find_purge(id, false).await?;
        if purge.status == PurgeStatus::Applying {
            return Err(Error::Conflict(format!(
                "Purge {id} is still being applied; it can be {verb} once it is done."
            )));
        }
        Ok(purge)
    }

    /// Record ids of listed messages, refused as a whole when one is not in the index.
    async fn listed_ids(&self, list: &[selection::MessageRef]) -> Result<Vec<i64>> {
        let frozen = selection::freeze(&self.pool, &Selection::Messages(list.to_vec())).await?;
        Ok(frozen.ids().to_vec())
    }
}

/// The topics an undo or erase touches: the listed messages', else every topic the purge
/// took messages from.
fn scope_topics<'a>(
    purge: &'a Purge,
    listed: Option<&'a [selection::MessageRef]>,
) -> Box<dyn Iterator<Item = &'a str> + Send + 'a> {
    match listed {
        Some(list) => Box::new(list.iter().map(|m| m.topic.as_str())),
        None => Box::new(purge.by_topic.0.keys().map(String::as_str)),
    }
}

/// Why an undo or erase finds nothing to change, in a sentence.
fn nothing_held(purge: &Purge, listed: bool, verb: &str) -> String {
    let id = &purge.id;
    if listed {
        format!("None of the listed messages is held by purge {id}: they are not part of it, were restored, or their payload was erased; nothing to {verb}.")
    } else if purge.erased > 0 && purge.erased >= purge.still_purged() {
        format!("The payloads of purge {id} were erased, so its messages can no longer be restored or erased again.")
    } else if purge.purged == 0 {
        format!("Purge {id} purged no message (every one was refused); nothing to {verb}.")
    } else {
        format!("Every message of purge {id} was already restored; nothing to {verb}.")
    }
}

/// Erase what a purge still holds (or the listed record ids), then empty both files' logs
/// so that the erased bytes are not left in them, and audit it. Returns the messages erased
/// and whether both logs were emptied.
async fn erase_all(
    pool: &sqlx::SqlitePool,
    purge: &Purge,
    only: Option<&[i64]>,
    actor: &Actor,
) -> Result<(i64, bool)> {
    let mut search_conn = search::connect(pool).await?;
    let mut erased = 0;
    let mut sizer = ChunkSizer::items();
    match only {
        Some(held) => {
            let mut rest = held;
            while !rest.is_empty() {
                let (ids, next) = rest.split_at(rest.len().min(sizer.size() as usize));
                let now = crate::clock::now_ms();
                let chunk =
                    purges::erase_chunk(pool, &mut search_conn, &purge.id, 0, 0, Some(ids), now)
                        .await?;
                erased += chunk.done;
                sizer.held(ids.len() as i64, chunk.held);
                rest = next;
            }
        }
        None => {
            let mut after = 0;
            loop {
                let now = crate::clock::now_ms();
                let chunk = purges::erase_chunk(
                    pool,
                    &mut search_conn,
                    &purge.id,
                    after,
                    sizer.size(),
                    None,
                    now,
                )
                .await?;
                erased += chunk.done;
                match chunk.through {
                    Some(t) => after = t,
                    None => break,
                }
                sizer.held(chunk.done, chunk.held);
                tokio::task::yield_now().await;
            }
        }
    }
    let main_truncated = wal::truncate(&mut *pool.acquire().await?).await?;
    let search_truncated = wal::truncate(&mut search_conn).await?;
    let summary = format!(
        "Payloads of {erased} message{} of purge {} erased.",
        plural(erased),
        purge.id
    );
    audit::append(
        pool,
        &NewEntry {
            at: crate::clock::now_ms(),
            actor: &actor.name,
            mode: actor.mode(),
            action: "purge.erase",
            job_id: Some(&purge.id),
            summary: &summary,
            detail: &serde_json::json!({ "erased": erased }),
        },
    )
    .await?;
    Ok((erased, main_truncated && search_truncated))
}

/// Wait for an action's task; a panic in it is an internal error, not a lost request.
async fn join<T>(task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    task.await
        .map_err(|e| Error::Internal(format!("The purge task stopped unexpectedly ({e}).")))?
}
