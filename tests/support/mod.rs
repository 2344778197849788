//! Test support. Engine tests: [`bot::Builder`] builds the real engine
//! (every setup goes through it), [`Harness`] and [`TestBot`] drive it,
//! [`chat::RecordingChat`] records what the channel saw and
//! [`backend::Hooked`] is every test double of a routing backend. Process
//! tests: [`serve_proc::ServeProc`] runs the real `serve` binary against
//! [`fake_slack::FakeSlack`]. Real peers: [`kube_env`] (kube-apiservers),
//! [`moto`] (Route53) and [`fault_proxy`] in front of any of them.

#![allow(dead_code)]

pub mod backend;
pub mod bot;
pub mod chat;
pub mod fake_slack;
pub mod fault_proxy;
pub mod kube_env;
pub mod moto;
pub mod prometheus;
pub mod replicas;
pub mod serve_proc;

// What engine tests name most, at the top (not every test uses each).
#[allow(unused_imports)]
pub use backend::{FaultyBackend, Observed};
#[allow(unused_imports)]
pub use bot::{reopen_journal, start_time, Harness, TestBot};
#[allow(unused_imports)]
pub use chat::{RecordingChat, Said};

use failover_bot::plan::Weights;

pub const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob, S0SRE]
  expires_after: 15m
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

pub const THREE_CLUSTERS: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-a.dev.example.com, context: a, weight: 100}
      - {name: k8s-b.dev.example.com, context: b, weight: 0}
      - {name: k8s-c.dev.example.com, context: c, weight: 0}
      - {name: k8s-d.dev.example.com, context: d}
"#;

pub fn weights(pairs: &[(&str, u8)]) -> Weights {
    pairs.iter().copied().collect()
}
