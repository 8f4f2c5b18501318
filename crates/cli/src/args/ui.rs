//! `stint ui`: the web dashboard.

use std::net::SocketAddr;

use clap::Args;

pub(super) const UI_LONG_ABOUT: &str = "\
Serve a web dashboard of the database: the runs (newest first, filterable), each run's nodes \
with a timeline of their attempts (bars coloured by end state, heartbeats as ticks, backoff gaps, \
the timeout that fired), each attempt (error, checkpoint, last heartbeat, output, revision, \
metadata, events), and the queues (counts, oldest ready age, throughput, tasks). Pages of a run \
or an attempt update by themselves while it runs. Every page has a JSON endpoint behind it \
(`/api/...`, see docs/ui.md). Everything is served from this binary; nothing is fetched from \
elsewhere.

The URL is printed on stderr at start. Ctrl-C or SIGTERM stops the server (exit 130).

Security: it listens on loopback by default. A --listen address other than loopback needs a \
token (--token or STINT_UI_TOKEN); every request must then show it (open the printed \
`?token=...` URL once: it becomes a cookie; scripts send `Authorization: Bearer TOKEN`). The \
dashboard is read-only unless --allow-actions, which adds cancel and retry buttons on queued \
tasks, accepted only with the token and from the dashboard's own pages (same-origin check); \
without a token, --allow-actions makes a random one and prints it in the URL.";

pub(super) const UI_AFTER_LONG_HELP: &str = "\
Examples:
  stint ui                                   # http://127.0.0.1:8080/
  stint ui --listen 127.0.0.1:0              # any free port (printed)
  STINT_UI_TOKEN=$(openssl rand -hex 16) stint ui --listen 0.0.0.0:8080
  curl -s http://127.0.0.1:8080/api/runs?state=failed | jq '.runs[].run_id'";

/// `stint ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The address to listen on (port 0: any free port). Not a loopback address: a token is
    /// required.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The token every request must show (compared in constant time).
    #[arg(
        long,
        env = "STINT_UI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Add cancel and retry buttons on queued tasks (token and same-origin checked).
    #[arg(long)]
    pub allow_actions: bool,
}
