use std::error::Error;
use std::process::ExitCode;

/// The process exit for a service's result: 0 on success; otherwise one line on
/// stderr, `error: <message>: <cause>: ...`, and status 1. Causes whose text the
/// message already includes are not repeated. No backtrace: the line is for the
/// operator and says what to change.
pub fn exit_code<E>(result: Result<(), E>) -> ExitCode
where
    E: std::ops::Deref<Target = dyn Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&*e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, skipping causes already quoted.
pub fn describe(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer without cause text")]
    struct Silent(#[source] std::io::Error);

    #[test]
    fn causes_appear_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(describe(&Quoting(io())), "outer: disk on fire");
        assert_eq!(
            describe(&Silent(io())),
            "outer without cause text: disk on fire"
        );
    }
}
