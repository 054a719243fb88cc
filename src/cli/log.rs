//! `-v`/`-vv` logs: the engine and the transport emit `tracing` events (node, step,
//! elapsed_ms, message); this layer formats each as one line, text or JSON, and writes it
//! through the one output sink (`Output::log`), so a log line is redacted like every other.
//! Without `-v` no subscriber is installed and every event is dropped at its call site.

use crate::cli::output::Output;
use std::fmt::Write as _;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// `--log-format`: how log lines (and, for json, every line strata writes to standard
/// error) are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The level `-v` counts give: none (off), info (steps and their times), debug (round trips,
/// script sizes, ssh's own log), trace.
pub fn level(verbose: u8) -> Option<Level> {
    match verbose {
        0 => None,
        1 => Some(Level::INFO),
        2 => Some(Level::DEBUG),
        _ => Some(Level::TRACE),
    }
}

/// Install the log for the whole process (tokio's workers included), if `-v` asks for one.
pub fn install(out: Arc<Output>, verbose: u8, format: LogFormat) {
    let Some(max) = level(verbose) else { return };
    let layer = LogLayer {
        out,
        max,
        json: format == LogFormat::Json,
    };
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

struct LogLayer {
    out: Arc<Output>,
    max: Level,
    json: bool,
}

impl<S: Subscriber> Layer<S> for LogLayer {
    /// strata's own events only (not its dependencies'), up to the chosen level.
    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        m.target().starts_with("strata") && *m.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max.into())
    }

    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        e.record(&mut f);
        let level = e.metadata().level().as_str();
        let ts = now_ms();
        let line = if self.json {
            json_line(ts, level, &f)
        } else {
            text_line(ts, level, &f)
        };
        self.out.log(&line);
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One event's fields: the four every line may carry, and any others in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    pub message: String,
    pub node: Option<String>,
    pub step: Option<String>,
    pub elapsed_ms: Option<u64>,
    pub extra: Vec<(String, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), serde_json::Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), serde_json::Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), serde_json::Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), serde_json::Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), serde_json::Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields (and the message) arrive here; their Debug is their Display.
        self.put(field.name(), serde_json::Value::from(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, name: &str, v: serde_json::Value) {
        let s = || match &v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match name {
            "message" => self.message = s(),
            "node" => self.node = Some(s()),
            "step" => self.step = Some(s()),
            "elapsed_ms" if v.is_u64() => self.elapsed_ms = v.as_u64(),
            _ => self.extra.push((name.to_string(), v)),
        }
    }
}

/// `2026-12-03T05:50:01.123Z INFO  validator-1 changes: done (412 ms) script_bytes=5120`
pub fn text_line(ts_ms: u64, level: &str, f: &Fields) -> String {
    let mut s = format!("{} {level:<5}", crate::report::rfc3339_ms(ts_ms));
    if let Some(n) = &f.node {
        let _ = write!(s, " {n}");
    }
    match &f.step {
        Some(st) => {
            let _ = write!(s, " {st}: {}", f.message);
        }
        None if f.node.is_some() => {
            let _ = write!(s, ": {}", f.message);
        }
        None => {
            let _ = write!(s, " {}", f.message);
        }
    }
    if let Some(ms) = f.elapsed_ms {
        let _ = write!(s, " ({ms} ms)");
    }
    for (k, v) in &f.extra {
        match v {
            serde_json::Value::String(t) => {
                let _ = write!(s, " {k}={t}");
            }
            other => {
                let _ = write!(s, " {k}={other}");
            }
        }
    }
    s
}

/// One JSON object: timestamp, level, node, step, elapsed_ms (when known), message, and any
/// other fields at the top level.
pub fn json_line(ts_ms: u64, level: &str, f: &Fields) -> String {
    let mut m = serde_json::Map::new();
    m.insert("timestamp".into(), crate::report::rfc3339_ms(ts_ms).into());
    m.insert("level".into(), level.into());
    if let Some(n) = &f.node {
        m.insert("node".into(), n.clone().into());
    }
    if let Some(st) = &f.step {
        m.insert("step".into(), st.clone().into());
    }
    if let Some(ms) = f.elapsed_ms {
        m.insert("elapsed_ms".into(), ms.into());
    }
    m.insert("message".into(), f.message.clone().into());
    for (k, v) in &f.extra {
        if !m.contains_key(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::Value::Object(m).to_string()
}

/// A plain message at a level, as a JSON log line (`--log-format json` wraps strata's
/// other standard-error lines so the stream stays one object per line).
pub fn json_message(level: &str, message: &str) -> String {
    json_line(
        now_ms(),
        level,
        &Fields {
            message: message.to_string(),
            ..Fields::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_fields() -> Fields {
        Fields {
            message: "done".into(),
            node: Some("validator-1".into()),
            step: Some("changes".into()),
            elapsed_ms: Some(412),
            extra: vec![("script_bytes".into(), 5120.into())],
        }
    }

    // 2026-12-03T05:50:01.123Z
    const TS: u64 = 1_796_277_001_123;

    #[test]
    fn text_line_reads_as_a_sentence() {
        assert_eq!(
            text_line(TS, "INFO", &step_fields()),
            "2026-12-03T05:50:01.123Z INFO  validator-1 changes: done (412 ms) script_bytes=5120"
        );
        let plain = Fields {
            message: "hello".into(),
            ..Fields::default()
        };
        assert_eq!(
            text_line(TS, "DEBUG", &plain),
            "2026-12-03T05:50:01.123Z DEBUG hello"
        );
        let node_only = Fields {
            message: "x".into(),
            node: Some("n".into()),
            ..Fields::default()
        };
        assert_eq!(
            text_line(TS, "INFO", &node_only),
            "2026-12-03T05:50:01.123Z INFO  n: x"
        );
    }

    #[test]
    fn json_line_has_the_documented_keys() {
        let v: serde_json::Value =
            serde_json::from_str(&json_line(TS, "INFO", &step_fields())).unwrap();
        assert_eq!(v["timestamp"], "2026-12-03T05:50:01.123Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["node"], "validator-1");
        assert_eq!(v["step"], "changes");
        assert_eq!(v["elapsed_ms"], 412);
        assert_eq!(v["message"], "done");
        assert_eq!(v["script_bytes"], 5120);
        // Absent fields are absent, not null; an extra field cannot overwrite a known one.
        let f = Fields {
            message: "m".into(),
            extra: vec![("level".into(), "forged".into())],
            ..Fields::default()
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(TS, "WARN", &f)).unwrap();
        assert_eq!(v["level"], "WARN");
        assert!(v.get("node").is_none() && v.get("elapsed_ms").is_none());
    }

    #[test]
    fn a_secret_with_a_quote_and_a_backslash_never_reaches_the_log() {
        let secret = r#"pa"ss\word-9f"#.to_string();
        let out = Output::new(crate::cli::output::ColorChoice::Never);
        out.set_secrets(std::slice::from_ref(&secret));
        let f = Fields {
            message: format!("validate said: {secret}"),
            node: Some("validator-1".into()),
            step: Some(format!("write {secret}")),
            elapsed_ms: None,
            extra: vec![("stderr".into(), secret.clone().into())],
        };
        let json = out.redact(&json_line(TS, "DEBUG", &f));
        let text = out.redact(&text_line(TS, "DEBUG", &f));
        for line in [&json, &text] {
            assert!(!line.contains(&secret), "{line}");
            assert!(!line.contains(r#"pa\"ss\\word-9f"#), "{line}");
            assert!(line.contains("<redacted>"), "{line}");
        }
        // Still one valid JSON object after redaction.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["stderr"], "<redacted>");
        assert_eq!(v["message"], "validate said: <redacted>");
    }

    #[test]
    fn events_are_recorded_through_the_layer_fields() {
        // The visitor, driven by a real tracing event (no subscriber output involved).
        struct Grab(Arc<std::sync::Mutex<Vec<Fields>>>);
        impl<S: Subscriber> Layer<S> for Grab {
            fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
                let mut f = Fields::default();
                e.record(&mut f);
                self.0.lock().unwrap().push(f);
            }
        }
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let sub = tracing_subscriber::registry().with(Grab(seen.clone()));
        tracing::subscriber::with_default(sub, || {
            let node = String::from("validator-2");
            tracing::info!(node = %node, step = "health check", elapsed_ms = 7u64, "done");
        });
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![Fields {
                message: "done".into(),
                node: Some("validator-2".into()),
                step: Some("health check".into()),
                elapsed_ms: Some(7),
                extra: vec![],
            }]
        );
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(level(0), None);
        assert_eq!(level(1), Some(Level::INFO));
        assert_eq!(level(2), Some(Level::DEBUG));
        assert_eq!(level(9), Some(Level::TRACE));
    }
}
