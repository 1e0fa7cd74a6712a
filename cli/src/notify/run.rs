//! One plan's run with its webhooks: started before the migration, the engine's sink
//! wrapped, the result queued, the counts put into the report before it is shown.

use engine::{Controls, Driver, EventSink, Report};
use plans::Plan;

use super::{with_command_line, Notifier, NotifyError, NotifySink, Targets};
use crate::args::{NotifyArgs, Output};

/// Puts the command line's webhooks into the plan (see [`with_command_line`]); refuses
/// a key's variable that is no variable's name (without repeating it: it may be the key
/// itself) or that is given for webhooks nothing asks for.
pub fn add_command_line(plan: &mut Plan, args: &NotifyArgs) -> Result<(), &'static str> {
    let secret_env = args.notify_secret_env.as_deref();
    if secret_env.is_some_and(|name| !plans::is_variable_name(name)) {
        return Err("--notify-secret-env takes the NAME of the environment variable that holds the webhooks' key (letters, digits and `_`), never the key");
    }
    plan.notify = with_command_line(plan.notify.take(), &args.urls, secret_env);
    match (plan.notify.is_none(), secret_env.is_some()) {
        (true, true) => Err("--notify-secret-env names the webhooks' key, but there are no webhooks: give --notify URL, or a [notify] table in the plan"),
        _ => Ok(()),
    }
}

/// The plan's webhooks, started; `None` when it has none.
pub fn start(plan: &Plan) -> Result<Option<Notifier>, NotifyError> {
    match &plan.notify {
        None => Ok(None),
        Some(notify) => Notifier::start(Targets::resolve(notify)?).map(Some),
    }
}

/// Says why the webhooks cannot start, before anything was changed; returns the exit
/// code (see [`NotifyError::exit_status`]).
pub fn refuse(output: Output, error: &NotifyError) -> i32 {
    let msg = error.to_string();
    match error.exit_status() {
        engine::ExitStatus::InvalidPlan => crate::exit::usage(output, &msg),
        _ => crate::exit::not_ready(output, &msg),
    }
}

/// Migrates with `sink`, and with the webhooks when there are any.
pub async fn migrate(
    plan: &Plan,
    driver: &mut dyn Driver,
    sink: &mut dyn EventSink,
    controls: Controls,
    webhooks: Option<&Notifier>,
) -> Report {
    let Some(notifier) = webhooks else {
        return engine::migrate(plan, driver, sink, controls).await;
    };
    let handle = notifier.handle();
    let mut sink = NotifySink::new(sink, handle.clone(), plan);
    let report = engine::migrate(plan, driver, &mut sink, controls).await;
    handle.result(&report);
    report
}

/// Waits for what the webhooks owe and puts their counts into the report.
pub async fn finish(webhooks: Option<Notifier>, report: &mut Report) {
    if let Some(notifier) = webhooks {
        report.notify = Some(notifier.finish().await);
    }
}
