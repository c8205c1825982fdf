use std::process::ExitCode;

use clap::Parser;
use dlq_dashboard::config::{BenchArgs, Cli, Command, ServeArgs};
use dlq_dashboard::{app, bench, replay};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's own message is several lines with usage; its first line says what is wrong.
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("dlq-dashboard: {first} (see --help)");
            return ExitCode::from(1);
        }
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dlq-dashboard: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::DevCluster(args)) => app::dev_cluster(args).await,
            Some(Command::Bench(args)) => run_bench(args).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Demo(args)) => {
                serve(ServeArgs {
                    demo_on_cluster: true,
                    ..args
                })
                .await
            }
            Some(Command::User { command }) => dlq_dashboard::auth::cli::user(command),
            Some(Command::Token { command }) => dlq_dashboard::auth::cli::token(command),
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlq-dashboard: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(args: ServeArgs) -> dlq_dashboard::error::Result<()> {
    app::Dashboard::start(args).await?.run_until_signal().await;
    Ok(())
}

async fn run_bench(args: BenchArgs) -> dlq_dashboard::error::Result<()> {
    if args.suite.index() {
        bench::run(args.clone()).await?;
    }
    if args.suite.replay() {
        replay::bench::run(&args).await?;
    }
    if args.suite.purge() {
        dlq_dashboard::actions::bench::run(&args).await?;
    }
    if args.suite.ingest() {
        bench::ingest::run(&args).await?;
    }
    Ok(())
}
