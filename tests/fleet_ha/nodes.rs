//! `redis-server` processes on free loopback ports, and what the tests read from them.

use super::*;

/// A free loopback port whose cluster bus port (+10000) is free too.
pub(crate) fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if port < 55000 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A certificate for 127.0.0.1 from a fresh CA, for nodes that speak TLS only.
pub(crate) struct Tls {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca_pem: String,
}

impl Tls {
    pub(crate) fn new() -> Tls {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL (redis-server, redis-cli) takes a leaf named like its issuer
        // for a self-signed certificate.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fleet_ha test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let key = KeyPair::generate().expect("server key");
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let leaf = leaf_params
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(dir.path().join("server.pem"), leaf.pem()).expect("write certificate");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write key");
        Tls {
            dir,
            ca_pem: ca.pem(),
        }
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `redis-server` arguments: TLS only on `port`, for clients, the cluster bus and replication.
    fn args(&self, port: u16) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-cluster".into(),
            "yes".into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }
}

/// One `redis-server` process (data node or sentinel) on loopback.
pub(crate) struct Node {
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) child: Option<tokio::process::Child>,
    /// The CA's PEM when the node speaks TLS only.
    pub(crate) tls_ca: Option<String>,
    /// The password `query` sends (`requirepass`).
    pub(crate) password: Option<String>,
}

impl Node {
    /// Starts `redis-server` with `args` (a config file first, for sentinels) and waits for PING.
    pub(crate) async fn start(server: &Path, config: Option<String>, args: &[String]) -> Node {
        Node::start_with(server, config, args, None).await
    }

    /// [`Node::start`], speaking TLS only when `tls` is given.
    pub(crate) async fn start_with(
        server: &Path,
        config: Option<String>,
        args: &[String],
        tls: Option<&Tls>,
    ) -> Node {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = tokio::process::Command::new(server);
        if let Some(text) = config {
            let file = dir.path().join("sentinel.conf");
            std::fs::write(&file, text.replace("PORT", &port.to_string())).expect("write conf");
            cmd.arg(file).arg("--sentinel");
        }
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(args)
            .args(tls.map(|t| t.args(port)).unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let node = Node {
            port,
            dir,
            child: Some(cmd.spawn().expect("spawn redis-server")),
            tls_ca: tls.map(|t| t.ca_pem.clone()),
            password: None,
        };
        // Up: it answers, if only to ask for a password.
        let up = poll_until(Duration::from_secs(10), || async {
            match node.query::<String>(&["PING"]).await {
                Ok(_) => true,
                Err(e) => e.code() == Some("NOAUTH"),
            }
        })
        .await;
        assert!(
            up,
            "redis-server on {port} answers PING; log:\n{}",
            node.log()
        );
        node
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash or a node loss would.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL redis-server");
        }
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        args: &[&str],
    ) -> redis::RedisResult<T> {
        let client = match &self.tls_ca {
            Some(ca) => redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{}/", self.port),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone().into_bytes()),
                },
            )?,
            None => redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?,
        };
        let mut conn = tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timeout")))??;
        if let Some(p) = &self.password {
            redis::cmd("AUTH")
                .arg(p)
                .query_async::<()>(&mut conn)
                .await?;
        }
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        tokio::time::timeout(Duration::from_secs(2), cmd.query_async(&mut conn))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timeout")))?
    }
}

/// Adds the Redis ACL user `user` with `password` and every permission to `node` (its default
/// user is left as it is).
pub(crate) async fn add_acl_user(node: &Node, user: &str, password: &str) {
    let ok: String = node
        .query(&[
            "ACL",
            "SETUSER",
            user,
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all",
        ])
        .await
        .expect("ACL SETUSER");
    assert_eq!(ok, "OK");
}

/// The fleet's key prefix of the test refresh token (the hash tag every key shares).
pub(crate) fn namespace_base() -> String {
    let ns = zoho_auth_proxy::token::redis_store::Namespace::new(CLIENT_ID, REFRESH_TOKEN);
    ns.channel()
        .strip_suffix(":updated")
        .expect("channel name ends in :updated")
        .to_string()
}

/// Entries in the fleet-wide mint log, as `node` has it.
pub(crate) async fn mint_log_len(node: &Node) -> usize {
    node.query::<usize>(&["ZCARD", &format!("{}:mints", namespace_base())])
        .await
        .expect("ZCARD on the node serving the fleet's keys")
}
