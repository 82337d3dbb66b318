//! A stand-in for the Kubernetes API server (`support/k8s_apiserver.py`),
//! speaking the real list/watch protocol, seeded with the demo's inventory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The stand-in API server, seeded with the demo's inventory.
pub(crate) struct ApiServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
}

impl ApiServer {
    pub(crate) fn start() -> ApiServer {
        ApiServer::start_with(&[])
    }

    /// Seeded with the demo's inventory and `more` objects after it.
    pub(crate) fn start_with(more: &[Value]) -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let inventory: Value = serde_json::from_str(
            &std::fs::read_to_string(super::project_root().join("demo/inventory.json")).unwrap(),
        )
        .unwrap();
        let mut seed_objects = inventory["items"].as_array().unwrap().clone();
        seed_objects.extend_from_slice(more);
        let seed = dir.path().join("seed.json");
        std::fs::write(&seed, Value::from(seed_objects).to_string()).unwrap();
        let script = super::project_root().join("flowtap/tests/support/k8s_apiserver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--quiet", "--bookmark-interval", "1"])
            .arg("--seed")
            .arg(&seed)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the API server stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: test\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: test\n\
                 current-context: standin\n"
            ),
        )
        .unwrap();
        ApiServer {
            child,
            port,
            _dir: dir,
            kubeconfig,
        }
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> Value {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "{reply}"
        );
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    pub(crate) fn stats(&self) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /_control/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
