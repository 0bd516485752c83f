//! Bounds on what may enter the replicated log, and the checks that enforce them.
//!
//! Why: every replica must be able to decode every entry it has appended, forever. serde_json
//! refuses input nested deeper than 128 levels, and a log entry or an AppendEntries body wraps a
//! command a few levels deeper than the request it came from; a value admitted at the edge of
//! that limit poisons the log on every replica (issue 8). So the API admits far less than the
//! decoders accept, and a command that exceeds the bounds is refused before it is proposed and
//! again at apply.
//!
//! | bound | value | where |
//! |---|---|---|
//! | nesting of a request body | [`MAX_REQUEST_DEPTH`] | the HTTP extractor |
//! | nesting of a free-form value (tenant config) | [`MAX_VALUE_DEPTH`] | before proposing, and apply |
//! | encoded size of a tenant config | [`MAX_CONFIG_BYTES`] | before proposing, and apply |
//! | nesting of an encoded command | [`MAX_COMMAND_DEPTH`] | before proposing |
//! | encoded size of a command | [`MAX_COMMAND_BYTES`] | before proposing |
//!
//! The decoders' own limit is serde_json's (127 levels); [`DECODER_DEPTH_MARGIN`] levels are left for the
//! wrapping (entry, payload, RPC body, snapshot row).
//!
//! Tenant configs are typed at the API edge (`storcon_api::tenant_config`), so an admitted config
//! nests 3 levels at most and only its size can reach a bound here; the checks stay for the
//! entries written before, which still apply as they did.

use crate::command::{Command, Rejection};

/// The deepest nesting serde_json's decoders accept: its fixed recursion limit of 128 admits
/// 127 levels of `[` and `{`.
pub const DECODER_MAX_DEPTH: usize = 127;
/// Levels kept free below [`DECODER_MAX_DEPTH`] for the envelopes around a command.
pub const DECODER_DEPTH_MARGIN: usize = 64;
/// The deepest encoded command that may be proposed.
pub const MAX_COMMAND_DEPTH: usize = DECODER_MAX_DEPTH - DECODER_DEPTH_MARGIN;
/// The deepest request body the API parses. Upstream's bodies nest 4 levels at most.
pub const MAX_REQUEST_DEPTH: usize = 32;
/// The deepest free-form value (a tenant config) a record may hold.
pub const MAX_VALUE_DEPTH: usize = 16;
/// The largest encoded tenant config. Upstream's whole `TenantConfig` is under 2 KiB.
pub const MAX_CONFIG_BYTES: usize = 32 << 10;
/// The largest encoded command. With the log's batch size this bounds an AppendEntries body
/// (see `raft-store`'s limits), so a follower can always take what the leader sends.
pub const MAX_COMMAND_BYTES: usize = 512 << 10;
/// Intents per `SetIntents` command; larger passes are proposed in several commands so that
/// each stays well under [`MAX_COMMAND_BYTES`].
pub const MAX_INTENTS_PER_COMMAND: usize = 1024;

const _: () = assert!(MAX_REQUEST_DEPTH + 16 <= MAX_COMMAND_DEPTH);
const _: () = assert!(MAX_VALUE_DEPTH < MAX_REQUEST_DEPTH);

/// The nesting depth of a JSON text: the deepest run of open `[` and `{`, as serde_json counts
/// it. It does not validate the text; a malformed one is left to the parser.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The nesting depth of a parsed value, counted like [`json_depth`] (a scalar is 0).
pub fn value_depth(value: &serde_json::Value) -> usize {
    // Iterative, so a hostile value cannot exhaust the stack here either.
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            serde_json::Value::Object(fields) => {
                max = max.max(d + 1);
                stack.extend(fields.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// A tenant config a record may hold: a JSON object within the depth and size bounds.
pub fn check_tenant_config(config: &serde_json::Value) -> Result<(), Rejection> {
    if !config.is_object() {
        return Err(Rejection::BadRequest(
            "tenant config must be a JSON object".into(),
        ));
    }
    let depth = value_depth(config);
    if depth > MAX_VALUE_DEPTH {
        return Err(Rejection::BadRequest(format!(
            "tenant config nests {depth} levels deep; at most {MAX_VALUE_DEPTH} are accepted"
        )));
    }
    let size = serde_json::to_vec(config).map_or(usize::MAX, |b| b.len());
    if size > MAX_CONFIG_BYTES {
        return Err(Rejection::BadRequest(format!(
            "tenant config is {size} bytes encoded; at most {MAX_CONFIG_BYTES} are accepted"
        )));
    }
    Ok(())
}

impl Command {
    /// Whether this command may be proposed. The values it carries are checked on their own
    /// (a whole tenant config, a config patch), so a request that apply would refuse for them
    /// never reaches the log; and its encoding fits the log's bounds, so every replica can
    /// decode the entry that carries it. Every proposer calls this; apply checks again what
    /// depends on the state (a patched config as a whole).
    pub fn check_admissible(&self) -> Result<(), Rejection> {
        self.admissible_size().map(|_| ())
    }

    /// [`Command::check_admissible`], answering the encoded size of an admissible command (the
    /// proposer bounds a batch by it). A [`Command::Batch`] is never admissible: only the
    /// proposer makes one, of commands admitted one by one, within [`MAX_COMMAND_BYTES`].
    pub fn admissible_size(&self) -> Result<usize, Rejection> {
        match self {
            Command::Batch(_) => {
                return Err(Rejection::BadRequest(
                    "a batch is made by the proposer, not proposed".into(),
                ));
            }
            Command::CreateTenant(c) => check_tenant_config(&c.config)?,
            Command::SetTenantConfig { config, .. } | Command::OnboardTenant { config, .. } => {
                check_tenant_config(config)?
            }
            Command::PatchTenantConfig { patch, .. } => {
                // Removals (nulls) shrink the result; what is set must fit a config by itself.
                let set: serde_json::Map<String, serde_json::Value> = patch
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                check_tenant_config(&serde_json::Value::Object(set))?
            }
            Command::AttachHook {
                config: Some(config),
                ..
            } => check_tenant_config(config)?,
            _ => {}
        }
        let bytes = serde_json::to_vec(self)
            .map_err(|e| Rejection::BadRequest(format!("command cannot be encoded: {e}")))?;
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(Rejection::BadRequest(format!(
                "request too large: the change encodes to {} bytes, at most {MAX_COMMAND_BYTES} \
                 are accepted",
                bytes.len()
            )));
        }
        let depth = json_depth(&bytes);
        if depth > MAX_COMMAND_DEPTH {
            return Err(Rejection::BadRequest(format!(
                "request nests {depth} levels deep once encoded; at most {MAX_COMMAND_DEPTH} \
                 are accepted"
            )));
        }
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_counted_as_serde_json_counts_it() {
        for (text, depth) in [
            ("1", 0),
            ("[]", 1),
            (r#"{"a":[1,{"b":2}]}"#, 3),
            (r#"["[[[[", "\"[[", {"k\\":"]]]"}]"#, 2),
            (r#"[[],[[]]]"#, 3),
        ] {
            assert_eq!(json_depth(text.as_bytes()), depth, "{text}");
            let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(value_depth(&value), depth, "{text}");
        }
        // serde_json's own limit agrees with the count.
        let at_limit = nested(DECODER_MAX_DEPTH);
        assert_eq!(json_depth(at_limit.as_bytes()), DECODER_MAX_DEPTH);
        assert!(serde_json::from_str::<serde_json::Value>(&at_limit).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(DECODER_MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn commands_with_configs_outside_the_bounds_are_not_proposed() {
        let tenant_id = "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id");
        let deep: serde_json::Value =
            serde_json::from_str(&format!("{{\"deep\":{}}}", nested(MAX_VALUE_DEPTH)))
                .expect("json");
        let mut patch = serde_json::Map::new();
        patch.insert("deep".into(), deep["deep"].clone());
        for command in [
            Command::SetTenantConfig {
                tenant_id,
                config: deep.clone(),
            },
            Command::SetTenantConfig {
                tenant_id,
                config: serde_json::json!(5),
            },
            Command::PatchTenantConfig { tenant_id, patch },
            Command::OnboardTenant {
                tenant_id,
                placement: crate::PlacementPolicy::Detached,
                config: serde_json::json!([]),
                generation: None,
            },
        ] {
            assert!(command.check_admissible().is_err(), "{command:?}");
        }
        let mut removal = serde_json::Map::new();
        removal.insert("gone".into(), serde_json::Value::Null);
        let fine = Command::PatchTenantConfig {
            tenant_id,
            patch: removal,
        };
        assert!(fine.check_admissible().is_ok());
    }

    #[test]
    fn configs_outside_the_bounds_are_refused() {
        let deep: serde_json::Value =
            serde_json::from_str(&format!("{{\"deep\":{}}}", nested(MAX_VALUE_DEPTH)))
                .expect("json");
        assert!(check_tenant_config(&deep).is_err());
        let ok: serde_json::Value =
            serde_json::from_str(&format!("{{\"deep\":{}}}", nested(MAX_VALUE_DEPTH - 1)))
                .expect("json");
        assert!(check_tenant_config(&ok).is_ok());
        assert!(check_tenant_config(&serde_json::json!(5)).is_err());
        assert!(check_tenant_config(&serde_json::json!([])).is_err());
        let big = serde_json::json!({ "k": "x".repeat(MAX_CONFIG_BYTES) });
        assert!(check_tenant_config(&big).is_err());
    }
}
