//! A strict reader of the Prometheus/OpenMetrics text a replica serves on `/metrics`, and a
//! scrape of one replica.
//!
//! Strict means: every line is a `# HELP`, `# TYPE` or `# UNIT` comment, the final `# EOF`, a
//! blank line, or a sample `name{label="value",...} value [timestamp]`; a family's HELP and TYPE
//! come at most once each and before its samples; its samples are contiguous and named after
//! it with a suffix its type allows (`_total` for a counter, `_bucket`/`_sum`/`_count` for a
//! histogram); no sample repeats; a histogram's buckets are cumulative and its `+Inf` bucket
//! equals its `_count`. Anything else is an error naming the line.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, anyhow, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct MetricFamily {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, MetricFamily>,
}

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" | "untyped" => &[""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "summary" => &["", "_sum", "_count", "_created"],
        _ => &[],
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut bytes = s.bytes();
    let first = |b: u8| b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':');
    matches!(bytes.next(), Some(b) if first(b))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':'))
}

fn parse_value(s: &str) -> anyhow::Result<f64> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| anyhow!("not a number: {s:?}")),
    }
}

/// `{k="v",...}` at the start of `s`: the labels and the rest of the line.
fn parse_labels(s: &str) -> anyhow::Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = s
        .strip_prefix('{')
        .ok_or_else(|| anyhow!("labels must start with {{"))?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or_else(|| anyhow!("label without ="))?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            bail!("bad label name {name:?}");
        }
        let mut chars = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| anyhow!("label {name} value is not quoted"))?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => bail!("bad escape in label {name}: {other:?}"),
                },
                Some((_, '\n')) | None => bail!("label {name} value is not closed"),
                Some((_, c)) => value.push(c),
            }
        };
        let quoted = &rest[eq + 1..];
        rest = &quoted[1 + end + 1..];
        if labels.insert(name.to_owned(), value).is_some() {
            bail!("label {name} given twice");
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            bail!("expected , or }} after label {name}");
        }
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_name(name, true) {
        bail!("bad metric name {name:?}");
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end..])?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| anyhow!("expected one space before the value"))?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or_default())?;
    if let Some(ts) = parts.next() {
        parse_value(ts).context("timestamp")?;
    }
    if parts.next().is_some() {
        bail!("trailing text after the value");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses a whole exposition strictly (see the module docs).
pub fn parse(text: &str) -> anyhow::Result<Exposition> {
    let mut out = Exposition::default();
    let mut current: Option<String> = None;
    let mut with_samples: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<(String, LabelKey)> = BTreeSet::new();
    let mut eof = false;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if eof {
            bail!("{}: text after # EOF", at());
        }
        if line.is_empty() {
            continue;
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let text = parts.next().unwrap_or("");
            if !is_name(name, true) {
                bail!("{}: bad metric name in comment", at());
            }
            if current.as_deref() != Some(name) && with_samples.contains(name) {
                bail!("{}: family {name} described after its samples", at());
            }
            let family = out.families.entry(name.to_owned()).or_default();
            if !family.samples.is_empty() {
                bail!("{}: metadata after samples", at());
            }
            match keyword {
                "HELP" => {
                    if family.help.replace(text.to_owned()).is_some() {
                        bail!("{}: second HELP for {name}", at());
                    }
                }
                "TYPE" => {
                    if !family.kind.is_empty() {
                        bail!("{}: second TYPE for {name}", at());
                    }
                    if suffixes(text).is_empty() {
                        bail!("{}: unknown type {text:?}", at());
                    }
                    family.kind = text.to_owned();
                }
                "UNIT" => {}
                _ => bail!("{}: unknown comment {keyword:?}", at()),
            }
            current = Some(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            bail!("{}: a comment that is not HELP, TYPE, UNIT or EOF", at());
        }
        let sample = parse_sample(line).with_context(at)?;
        let family_name = current
            .clone()
            .ok_or_else(|| anyhow!("{}: sample before any TYPE", at()))?;
        let family = out
            .families
            .get_mut(&family_name)
            .ok_or_else(|| anyhow!("{}: no family", at()))?;
        if family.kind.is_empty() {
            bail!("{}: family {family_name} has no TYPE", at());
        }
        let fits = suffixes(&family.kind)
            .iter()
            .any(|suffix| sample.name == format!("{family_name}{suffix}"));
        if !fits {
            bail!(
                "{}: not a sample of the {} {family_name}",
                at(),
                family.kind
            );
        }
        let key: LabelKey = sample.labels.clone().into_iter().collect();
        if !seen.insert((sample.name.clone(), key)) {
            bail!("{}: the same sample twice", at());
        }
        with_samples.insert(family_name);
        family.samples.push(sample);
    }
    for (name, family) in &out.families {
        if family.kind.is_empty() {
            bail!("family {name} has HELP but no TYPE");
        }
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(out)
}

/// A sample's labels as a sortable key.
type LabelKey = Vec<(String, String)>;

/// Per label set (without `le`): cumulative buckets, `+Inf` last and equal to `_count`.
fn check_histogram(name: &str, family: &MetricFamily) -> anyhow::Result<()> {
    let mut buckets: BTreeMap<LabelKey, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<LabelKey, f64> = BTreeMap::new();
    for s in &family.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let key: LabelKey = labels.into_iter().collect();
        if s.name.ends_with("_bucket") {
            let le = le.ok_or_else(|| anyhow!("{name}: bucket without le"))?;
            buckets
                .entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        }
    }
    for (key, series) in &buckets {
        for pair in series.windows(2) {
            if pair[1].0 <= pair[0].0 || pair[1].1 < pair[0].1 {
                bail!("{name} {key:?}: buckets not increasing and cumulative: {series:?}");
            }
        }
        let last = series.last().copied().unwrap_or((0.0, 0.0));
        if last.0 != f64::INFINITY || Some(&last.1) != counts.get(key) {
            bail!("{name} {key:?}: +Inf bucket {last:?} is not last or not _count");
        }
    }
    Ok(())
}

impl Exposition {
    /// Every sample name the exposition declares: each family's name with each suffix its type
    /// has (a counter `x` exposes `x_total`), whether or not a label set has been recorded yet.
    pub fn exposed_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, family) in &self.families {
            for suffix in suffixes(&family.kind) {
                if *suffix != "_created" {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
        names
    }

    /// The sum of the samples called `name` whose labels include every pair of `labels`;
    /// `0.0` when there is none (a series not recorded yet).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The one sample called `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// `GET /metrics` on `base_url` (no token: the route is public), checked for status and
/// content type, and parsed strictly.
pub async fn scrape(http: &reqwest::Client, base_url: &str) -> anyhow::Result<Exposition> {
    let url = format!("{base_url}/metrics");
    let resp = http.get(&url).send().await.with_context(|| url.clone())?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.text().await.with_context(|| url.clone())?;
    if status != reqwest::StatusCode::OK {
        bail!("{url}: {status}: {body}");
    }
    if !content_type.starts_with("application/openmetrics-text") {
        bail!("{url}: content type {content_type:?}");
    }
    parse(&body).with_context(|| format!("{url} is not strict Prometheus text"))
}

/// The metric names (`storage_controller_*`, `storcon_*`) used in every `expr` of a Grafana
/// dashboard, wherever the panels nest them.
pub fn dashboard_metric_names(dashboard: &serde_json::Value) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(expr)) => names_in(expr, out),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    fn names_in(expr: &str, out: &mut BTreeSet<String>) {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        for word in expr.split(|c: char| !ident(c)) {
            if word.starts_with("storage_controller_") || word.starts_with("storcon_") {
                out.insert(word.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dashboard, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::parse;

    const GOOD: &str = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
        a_requests_total{path=\"/v1/x\",status=\"200\"} 3\n\
        # HELP lat Latency.\n# TYPE lat histogram\n\
        lat_sum{m=\"get\"} 0.5\nlat_count{m=\"get\"} 2\n\
        lat_bucket{le=\"0.1\",m=\"get\"} 1\nlat_bucket{le=\"+Inf\",m=\"get\"} 2\n\
        # TYPE g gauge\ng 7\n# EOF\n";

    #[test]
    fn accepts_a_well_formed_exposition() {
        let e = parse(GOOD).expect("parses");
        assert_eq!(e.sum("a_requests_total", &[("path", "/v1/x")]), 3.0);
        assert_eq!(e.value("g", &[]), Some(7.0));
        assert!(e.exposed_names().contains("lat_bucket"));
    }

    #[test]
    fn refuses_what_is_not_strict() {
        for (bad, why) in [
            ("x 1\n", "sample before TYPE"),
            ("# TYPE x counter\nx 1\n", "counter sample without _total"),
            ("# TYPE x gauge\n# TYPE x gauge\nx 1\n", "second TYPE"),
            ("# TYPE x gauge\nx{a=\"1\" 1\n", "unclosed labels"),
            ("# TYPE x gauge\nx{a=1} 1\n", "unquoted label"),
            ("# TYPE x gauge\nx one\n", "bad value"),
            ("# TYPE x gauge\nx 1\nx 2\n", "repeated sample"),
            (
                "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 3\n",
                "family not contiguous",
            ),
            ("# hello\n", "free comment"),
            ("# TYPE x gauge\nx 1\n# EOF\nx 2\n", "text after EOF"),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
                "buckets not cumulative",
            ),
        ] {
            assert!(parse(bad).is_err(), "accepted: {why}");
        }
    }
}
