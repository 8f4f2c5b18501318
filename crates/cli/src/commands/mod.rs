//! One module per group of commands; [`dispatch`] picks the one the command line names.

mod admin;
mod events;
mod heartbeat;
mod inspect;
mod output;
mod queue;
mod run;
mod schema;
mod submit;
mod ui;
mod worker;

use crate::args::{Cli, Command};
use crate::exit::CliError;

/// Runs the parsed command line and returns the exit code.
pub(crate) async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let db = cli.db.as_str();
    match cli.command {
        Command::Run(args) => run::run(db, cli.quiet, args).await,
        Command::Runs(args) => inspect::runs(db, &args).await,
        Command::Attempts(args) => inspect::attempts(db, &args).await,
        Command::Nodes(args) => inspect::nodes(db, &args).await,
        Command::Events(args) => events::events(db, &args).await,
        Command::Output(args) => output::output(db, cli.quiet, &args).await,
        Command::Schema(args) => schema::schema(&args),
        Command::Recover => admin::recover(db, cli.quiet).await,
        Command::Migrate => admin::migrate(db, cli.quiet).await,
        Command::Heartbeat(args) => heartbeat::heartbeat(&args),
        Command::Submit(args) => submit::submit(db, cli.quiet, args).await,
        Command::Tasks(args) => queue::tasks(db, &args).await,
        Command::Queues(args) => queue::queues(db, &args).await,
        Command::Cancel(args) => queue::cancel(db, &args).await,
        Command::Retry(args) => queue::retry(db, &args).await,
        Command::Prune(args) => queue::prune(db, cli.quiet, &args).await,
        Command::Queue(command) => queue::queue(db, &command).await,
        Command::Worker(args) => worker::worker(db, cli.quiet, args).await,
        Command::Ui(args) => ui::ui(db, cli.quiet, &args).await,
    }
}
