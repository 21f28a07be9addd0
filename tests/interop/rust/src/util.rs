//! What the seed modules share: the outcome type, argument parsing and the
//! comparison that `check` verbs report with. Nothing here touches a
//! registry file: that is each seed's own code.

use std::fmt::Debug;
use std::io::Write;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a verb did not succeed; decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad command line (exit 2).
    Usage(String),
    /// An error or a mismatch (exit 1).
    Failed(String),
    /// The seed's own rules refused (exit 3): a live holder, a busy lock, a duplicate.
    Refused(String),
}

pub type Outcome = Result<(), Failure>;

/// Prints the failure, if any, and returns the exit code.
pub fn report(result: Outcome) -> i32 {
    let (code, message) = match result {
        Ok(()) => return 0,
        Err(Failure::Usage(m)) => (2, m),
        Err(Failure::Failed(m)) => (1, m),
        Err(Failure::Refused(m)) => (3, m),
    };
    eprintln!("seedio: {message}");
    code
}

/// Turns any displayable error into `Failure::Failed` with a context.
pub fn failed<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> Failure + '_ {
    move |e| Failure::Failed(format!("{context}: {e}"))
}

/// Exactly `n` arguments after the verb, or a usage error naming the verb's form.
pub fn want(args: &[String], n: usize, form: &str) -> Result<(), Failure> {
    if args.len() == n {
        Ok(())
    } else {
        Err(Failure::Usage(format!("usage: {form}")))
    }
}

/// A JSON command-line argument decoded as `T` by serde (the seed's own type).
///
/// Strict where the seed is lenient, because this is the test's own input:
/// every key the argument has must be one `T` writes back, so a field the
/// test expects (or asks to write) cannot silently vanish because the seed's
/// type does not know it, which would make a comparison vacuous.
pub fn from_json_arg<T: DeserializeOwned + Serialize>(what: &str, text: &str) -> Result<T, Failure> {
    let value: T =
        serde_json::from_str(text).map_err(|e| Failure::Usage(format!("{what}: bad JSON argument: {e}")))?;
    let given: serde_json::Value = serde_json::from_str(text).map_err(failed(what))?;
    let known = serde_json::to_value(&value).map_err(failed(what))?;
    keys_known(&given, &known, what).map_err(Failure::Usage)?;
    Ok(value)
}

/// Every object key in `given` is present at the same place in `known`.
fn keys_known(given: &serde_json::Value, known: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value;
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g {
                let place = format!("{at}.{key}");
                match k.get(key) {
                    Some(inner) => keys_known(value, inner, &place)?,
                    None => return Err(format!("{place}: the seed's type has no such field")),
                }
            }
            Ok(())
        }
        (Value::Array(g), Value::Array(k)) if g.len() == k.len() => {
            for (i, (a, b)) in g.iter().zip(k.iter()).enumerate() {
                keys_known(a, b, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An integer command-line argument.
pub fn number_arg<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, Failure> {
    text.parse::<T>()
        .map_err(|_| Failure::Usage(format!("{what}: not a number: {text:?}")))
}

/// Prints `value` as one line of JSON on stdout (for the test to read back).
pub fn print_json<T: Serialize>(value: &T) -> Outcome {
    let text = serde_json::to_string(value).map_err(failed("encode output"))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{text}").map_err(failed("write stdout"))?;
    out.flush().map_err(failed("flush stdout"))
}

/// `Ok` when `actual == expected`; otherwise a mismatch naming `what` with both
/// values as JSON.
pub fn expect_eq<T: PartialEq + Serialize + Debug>(what: &str, actual: &T, expected: &T) -> Outcome {
    if actual == expected {
        return Ok(());
    }
    let show = |v: &T| serde_json::to_string_pretty(v).unwrap_or_else(|_| format!("{v:?}"));
    Err(Failure::Failed(format!(
        "{what} differs\n--- read by the seed's code:\n{}\n--- expected:\n{}",
        show(actual),
        show(expected)
    )))
}
