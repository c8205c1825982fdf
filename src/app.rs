//! Startup, background tasks and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actions::{Actions, Reclaimer};
use crate::auth::{self, Auth};
use crate::config::{DevClusterArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::index::consumer::Indexer;
use crate::index::IndexerStatus;
use crate::kafka::admin::BrokerAdmin;
use crate::kafka::mock::EmbeddedCluster;
use crate::kafka::{Compression, KafkaSettings, TopicCache};
use crate::replay::outcomes::{ConsumerGroupRules, KafkaGroupOffsets, OutcomeTracker};
use crate::replay::runner::Replayer;
use crate::replay::target::TargetRules;
use crate::topics::TopicSelection;
use crate::web::{App, AppState};
use crate::{demo, store, web};

/// A running dashboard: its address, state and tasks. Dropping it does not stop it; call
/// [`Dashboard::shutdown`].
pub struct Dashboard {
    /// The address the web server bound.
    pub addr: SocketAddr,
    /// Shared state (tests read the pool and status through it).
    pub state: AppState,
    /// The embedded cluster, when one was started.
    pub cluster: Option<Arc<EmbeddedCluster>>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// This process's hold on the index file, released after the tasks have stopped.
    _lock: store::space::IndexLock,
}

impl Dashboard {
    /// Validate the configuration, open the index, connect to Kafka (or start the embedded
    /// cluster), bind the listener and start every background task.
    pub async fn start(args: ServeArgs) -> Result<Self> {
        // First, so that an unsafe configuration is refused before anything starts.
        let auth = Arc::new(Auth::new(&auth::Settings {
            listen: args.listen,
            users: args.users.clone(),
            insecure_no_auth: args.insecure_no_auth,
            public_url: args.public_url.clone(),
            session_idle: args.session_idle,
            session_lifetime: args.session_lifetime,
            tls: args.tls_cert.is_some(),
            proxy: auth::proxy::ProxyRules::parse(
                &args.trusted_proxies,
                &args.proxy_user_header,
                &args.proxy_groups_header,
                &args.proxy_group_roles,
            )
            .map_err(Error::Config)?,
        })?);
        let role_topics = crate::actions::RoleTopics::parse(
            &args.role_topics,
            &auth::role::Role::ALL.map(|r| r.as_str()),
        )
        .map_err(Error::Config)?;
        let disclosure = crate::redact::Disclosure::new(
            args.viewer_payloads,
            &args.redact_json_fields,
            &args.redact_headers,
            args.redact_for_all,
        )
        .map_err(Error::Config)?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        let topics = TopicSelection::parse(&args.dlq_topics).map_err(Error::Config)?;
        // The demo runs on the embedded cluster unless --no-demo, and on a real cluster only
        // when asked with `demo`: `serve --brokers` never starts it.
        let demo_runs = args.demo_on_cluster || (args.brokers.is_none() && !args.no_demo);
        let mut replay_targets = args.replay_targets.clone();
        if demo_runs {
            replay_targets.extend(demo_replay_targets(&args.replay_targets));
        }
        let replay_rules =
            TargetRules::parse(&replay_targets, &args.replay_template).map_err(Error::Config)?;
        let replay_compression =
            Compression::for_replay(args.replay_compression, &args.kafka_config)
                .map_err(Error::Config)?;
        let consumer_groups =
            ConsumerGroupRules::parse(&args.replay_consumer_groups).map_err(Error::Config)?;
        let database = database_path(&args);
        if let Some(sentence) = store::space::not_writable(&database) {
            return Err(Error::Config(sentence));
        }
        // Before anything touches the files: a second dashboard on them is refused here.
        let lock = store::space::lock(&database)?;
        if demo_index(&args) {
            start_demo_afresh(&database)?;
        }
        let pool = store::open_with(&database, &disclosure.search_mask()).await?;
        store::codec::set_compress_above(
            &pool,
            usize::try_from(args.compress_payloads_above).unwrap_or(usize::MAX),
        )
        .await?;
        let health = store::health::WriteHealth::register(&database);
        health.set_min_free_space(args.min_free_space);
        let (kafka, cluster) = match &args.brokers {
            Some(brokers) => {
                let kafka = KafkaSettings {
                    brokers: brokers.clone(),
                    extra: args.kafka_config.clone(),
                    embedded: false,
                    replay_compression,
                };
                if demo_runs {
                    demo::topics::create_on_cluster(&kafka).await?;
                }
                (kafka, None)
            }
            None => {
                let cluster = EmbeddedCluster::start(3)?;
                demo::create_topics(&cluster)?;
                (
                    KafkaSettings {
                        brokers: cluster.bootstrap_servers().to_string(),
                        extra: args.kafka_config.clone(),
                        embedded: true,
                        replay_compression,
                    },
                    Some(Arc::new(cluster)),
                )
            }
        };
        let status = Arc::new(IndexerStatus::new());
        let indexer = Indexer {
            kafka: kafka.clone(),
            topics: topics.clone(),
            group_id: match &args.group_id {
                Some(g) => g.clone(),
                None => format!("dlq-dashboard-{}", store::identity::index_id(&pool).await?),
            },
            pool: pool.clone(),
            status: status.clone(),
            health: health.clone(),
            probe: Default::default(),
            verified: Default::default(),
        };
        let consumer = indexer.connect().await?;
        let listener = TcpListener::bind(args.listen).await.map_err(|e| {
            Error::Config(format!(
                "Cannot listen on {} ({e}); pick another --listen address.",
                args.listen
            ))
        })?;
        let addr = listener.local_addr()?;
        if let Some(path) = &args.port_file {
            std::fs::write(path, addr.port().to_string()).map_err(|e| {
                Error::Config(format!(
                    "Cannot write the port file {} ({e}).",
                    path.display()
                ))
            })?;
        }
        let replayer = Arc::new(Replayer::new(pool.clone(), &kafka)?);
        let actions = Arc::new(Actions::new(
            pool.clone(),
            topics,
            replay_rules,
            kafka.replay_compression,
            Arc::new(TopicCache::new(&kafka)?),
            replayer.clone(),
            Reclaimer::new(
                Arc::new(BrokerAdmin::new(&kafka)?),
                args.reclaim_keeps_payload,
            ),
        ));
        let retention = Arc::new(crate::retention::Retention::new(pool.clone(), args.retain));
        let state = AppState(Arc::new(App {
            retention,
            pool,
            status,
            kafka: kafka.clone(),
            actions,
            http: Default::default(),
            auth,
            role_topics,
            disclosure,
            edge: web::edge::EdgeLimits {
                max_body: args.max_request_body,
                timeout: args.request_timeout,
                per_client: args.max_requests_per_client,
            },
            health: health.clone(),
            min_free_space: args.min_free_space,
            demo: demo_runs.then(demo::new_state),
        }));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(indexer.run(consumer, shutdown.clone()));
        tasks.spawn(replayer.run(shutdown.clone()));
        let resuming = state.actions.clone();
        tasks.spawn(async move {
            if let Err(e) = resuming.resume_purges().await {
                tracing::error!(error = %e, "a purge confirmed before the restart could not be applied");
            }
        });
        tasks.spawn(
            OutcomeTracker::new(
                state.pool.clone(),
                Arc::new(KafkaGroupOffsets::new(&kafka)),
                consumer_groups,
            )
            .run(shutdown.clone()),
        );
        tasks.spawn(state.retention.clone().run(shutdown.clone()));
        tasks.spawn(
            crate::index::backfill::Backfill {
                kafka: kafka.clone(),
                pool: state.pool.clone(),
                health: health.clone(),
            }
            .run(shutdown.clone()),
        );
        tasks.spawn(crate::index::search::run(
            state.pool.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        let watch = |file| crate::checkpoints::Watch {
            file,
            health: health.clone(),
            max_wal_bytes: args.max_wal_size,
        };
        tasks.spawn(store::restore::run(
            state.pool.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::checkpoints::run(
            state.pool.clone(),
            watch(store::health::WalFile::Index),
            shutdown.clone(),
        ));
        tasks.spawn(crate::checkpoints::run_on(
            store::search::connect_options(&store::search::path_of(&state.pool))
                .create_if_missing(false),
            watch(store::health::WalFile::Search),
            shutdown.clone(),
        ));
        if let Some(demo_state) = &state.demo {
            demo::spawn(
                &args.demo,
                &kafka,
                demo_state.clone(),
                &mut tasks,
                &shutdown,
            )?;
        }
        let app = web::router(state.clone());
        let stop = shutdown.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        match tls {
            None => {
                tasks.spawn(async move {
                    let served = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "web server stopped");
                    }
                });
            }
            Some(config) => {
                let listener = listener.into_std()?;
                tasks.spawn(async move {
                    let handle = axum_server::Handle::new();
                    let server = axum_server::from_tcp_rustls(listener, config)
                        .handle(handle.clone())
                        .serve(app.into_make_service_with_connect_info::<SocketAddr>());
                    let trigger = async {
                        stop.cancelled().await;
                        handle.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
                    };
                    let (served, ()) = tokio::join!(server, trigger);
                    if let Err(e) = served {
                        tracing::error!(error = %e, "web server stopped");
                    }
                });
            }
        }
        if let Some(users) = state
            .auth
            .users
            .as_ref()
            .filter(|_| state.auth.awaiting_first_user())
        {
            tracing::warn!(
                "no user can sign in yet, so only /healthz is served: add one with `dlq-dashboard user add NAME --role admin --users {}` (in a container: docker exec -it CONTAINER dlq-dashboard user add NAME --role admin); no restart needed",
                users.path().display()
            );
        }
        if state.auth.insecure {
            tracing::warn!("authentication is off (--insecure-no-auth): anyone who reaches {addr} can replay, purge and erase");
        }
        if kafka.embedded {
            tracing::info!(
                "dlq-dashboard on {scheme}://{addr} — embedded demo Kafka at {} (a mock cluster inside this process: its data lives only as long as the process; pass --brokers to index a real cluster)",
                kafka.brokers
            );
        } else {
            tracing::info!(
                "dlq-dashboard on {scheme}://{addr} — indexing {} from {}",
                state.actions.topics().subscriptions.join(","),
                kafka.brokers
            );
        }
        Ok(Dashboard {
            addr,
            state,
            cluster,
            shutdown,
            tasks,
            _lock: lock,
        })
    }

    /// Stop every task and wait for them: the web server drains, the indexer finishes its batch.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.state.pool.close().await;
    }

    /// Run until ctrl-c or SIGTERM, then shut down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// The demo's replay targets that the operator did not map otherwise.
fn demo_replay_targets(given: &[String]) -> Vec<String> {
    demo::REPLAY_TARGETS
        .iter()
        .filter(|(dlq, _)| {
            !given
                .iter()
                .any(|g| g.split_once('=').is_some_and(|(d, _)| d.trim() == *dlq))
        })
        .map(|(dlq, retry)| format!("{dlq}={retry}"))
        .collect()
}

/// The index file. The embedded demo's cluster dies with the process, so with the default
/// path the demo indexes into its own file, started afresh each run (see
/// [`start_demo_afresh`]); an index of a previous demo cluster would only show its records
/// next to the new ones and report every partition as restarted. An explicit --database is
/// always used as given.
fn database_path(args: &ServeArgs) -> std::path::PathBuf {
    if demo_index(args) {
        args.database.with_file_name("dlq-dashboard-demo.db")
    } else {
        args.database.clone()
    }
}

/// Whether this run indexes the embedded demo into the default demo file.
fn demo_index(args: &ServeArgs) -> bool {
    args.brokers.is_none() && args.database == ServeArgs::default().database
}

/// Remove the demo index of an earlier run (the caller holds its lock, so it is no other
/// running demo's).
fn start_demo_afresh(demo: &std::path::Path) -> Result<()> {
    let search = store::search::path_for(demo);
    for (file, suffix) in [demo, search.as_path()]
        .into_iter()
        .flat_map(|f| ["", "-wal", "-shm"].map(|s| (f, s)))
    {
        let mut path = file.as_os_str().to_os_string();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Config(format!(
                    "Cannot start the demo index afresh: removing {} failed ({e}).",
                    std::path::Path::new(&path).display()
                )))
            }
        }
    }
    Ok(())
}

/// The TLS settings of `--tls-cert` and `--tls-key` (PEM files), or a sentence naming the
/// file that could not be read.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let unreadable = |file: &std::path::Path, what: &str, e: &dyn std::fmt::Display| {
        Error::Config(format!(
            "Cannot read {what} from {} ({e}); give a PEM file.",
            file.display()
        ))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| unreadable(cert, "the --tls-cert certificates", &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| unreadable(cert, "the --tls-cert certificates", &e))?;
    if chain.is_empty() {
        return Err(unreadable(cert, "a certificate", &"none found"));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable(key, "the --tls-key key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS cannot be set up ({e}).")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Error::Config(format!(
                "The --tls-key does not fit the --tls-cert ({e}); give the key the certificate was made for."
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

/// `dev-cluster`: run the mock cluster alone and print its bootstrap address.
pub async fn dev_cluster(args: DevClusterArgs) -> Result<()> {
    let cluster = EmbeddedCluster::start(args.brokers_count)?;
    for (topic, partitions) in &args.topics {
        cluster.create_topic(topic, *partitions)?;
    }
    println!("bootstrap: {}", cluster.bootstrap_servers());
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(
        "embedded Kafka running with {} brokers; stop with ctrl-c; commands on stdin: down [ID], up [ID], topic NAME[:PARTITIONS]",
        args.brokers_count
    );
    let cluster = Arc::new(cluster);
    let control = cluster.clone();
    // Commands on stdin let a developer (or a test) simulate outages without restarting the
    // cluster, whose ports would change. A closed stdin simply ends the command reader.
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin()
            .lock()
            .lines()
            .map_while(std::result::Result::ok)
        {
            let reply = match dev_cluster_command(&control, &line) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error: {e}"),
            };
            println!("{reply}");
            let _ = std::io::stdout().flush();
        }
    });
    wait_for_signal().await;
    drop(cluster);
    Ok(())
}

/// One `dev-cluster` stdin command: `down [ID]`, `up [ID]` (all brokers without an id), or
/// `topic NAME[:PARTITIONS]`.
fn dev_cluster_command(cluster: &EmbeddedCluster, line: &str) -> Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let brokers = |id: Option<&&str>| -> Result<Vec<i32>> {
        match id {
            None => Ok(cluster.broker_ids().collect()),
            Some(id) => id
                .parse::<i32>()
                .ok()
                .filter(|i| cluster.broker_ids().contains(i))
                .map(|i| vec![i])
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "no broker {id}; ids are 0 (the controller) to {}",
                        cluster.broker_count()
                    ))
                }),
        }
    };
    match words.as_slice() {
        ["down", rest @ ..] => brokers(rest.first())?
            .into_iter()
            .try_for_each(|b| cluster.broker_down(b)),
        ["up", rest @ ..] => brokers(rest.first())?
            .into_iter()
            .try_for_each(|b| cluster.broker_up(b)),
        ["topic", spec] => {
            let (name, partitions) =
                crate::config::parse_topic_spec(spec).map_err(Error::BadRequest)?;
            cluster.create_topic(&name, partitions)
        }
        _ => Err(Error::BadRequest(format!(
            "unknown command '{line}'; use down [ID], up [ID] or topic NAME[:PARTITIONS]"
        ))),
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
