//! Profiles: which kinds are masked and how, the key rules, a profile's own
//! patterns, the media policies and the limits; the built-in `safe-harbor`
//! profile; and the `[mask.NAME]` config tables that build the others.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::action::Action;
use super::detect::CustomRule;
use super::entity::{BUILTIN_COUNT, Entity};
use super::keys::KeyRules;
use super::media::MediaPolicy;

pub const SAFE_HARBOR: &str = "safe-harbor";
/// Bodies larger than this are refused (`Outcome::TooLarge`).
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;
/// Deeper JSON is masked as text (`TextReason::TooDeep`); serde_json's own
/// recursion limit is the same.
pub const DEFAULT_MAX_DEPTH: usize = 128;
/// Compiled size limit of a profile's own regex.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    enabled: [bool; BUILTIN_COUNT],
    actions: [Action; BUILTIN_COUNT],
    patterns: Vec<Pattern>,
    pub keys: KeyRules,
    pub images: MediaPolicy,
    pub audio: MediaPolicy,
    pub max_bytes: usize,
    pub max_depth: usize,
    /// What happens to a message over `max_bytes`.
    pub oversize: Oversize,
}

/// `oversize`: a message over `max_bytes` is refused (the client gets a
/// JSON-RPC error), or streamed: masked piece by piece as it arrives, in
/// bounded memory, without the JSON walker's view of the whole message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    #[default]
    Refuse,
    Stream,
}

/// A profile's own pattern: matches are `entity` and get `action`.
#[derive(Debug, Clone)]
struct Pattern {
    entity: Entity,
    regex: Regex,
    action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub profile: String,
    /// The config key at fault (`actions.ssn`, `patterns[2].regex`).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mask.{}.{}: {}", self.profile, self.key, self.message)
    }
}

impl std::error::Error for ProfileError {}

impl Profile {
    /// HIPAA Safe Harbor: every identifier kind on; dates keep their year,
    /// ZIP codes their first three digits (000 in small areas), everything
    /// else is redacted (same length, so raw buffers are edited in place);
    /// the built-in key rules; images and audio replaced by placeholders.
    pub fn safe_harbor() -> Profile {
        let mut actions = [Action::Redact; BUILTIN_COUNT];
        actions[Entity::Date.index().expect("built-in")] = Action::Year;
        actions[Entity::Zip.index().expect("built-in")] = Action::Zip3;
        Profile {
            name: SAFE_HARBOR.to_owned(),
            enabled: [true; BUILTIN_COUNT],
            actions,
            patterns: Vec::new(),
            keys: KeyRules::safe_harbor(),
            images: MediaPolicy::Placeholder,
            audio: MediaPolicy::Placeholder,
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            oversize: Oversize::Refuse,
        }
    }

    /// Nothing enabled, no key rules: a base for profiles that list what
    /// they want.
    pub fn empty(name: &str) -> Profile {
        Profile {
            name: name.to_owned(),
            enabled: [false; BUILTIN_COUNT],
            keys: KeyRules::empty(),
            ..Profile::safe_harbor()
        }
    }

    #[inline]
    pub fn is_enabled(&self, entity: &Entity) -> bool {
        match entity.index() {
            Some(i) => self.enabled[i],
            None => self.patterns.iter().any(|p| p.entity == *entity),
        }
    }

    /// A built-in kind's action is a load where it is asked (once per
    /// masked value); a custom kind's is looked up out of line.
    #[inline]
    pub fn action(&self, entity: &Entity) -> Action {
        match entity.index() {
            Some(i) => self.actions[i],
            None => self.pattern_action(entity),
        }
    }

    #[inline(never)]
    fn pattern_action(&self, entity: &Entity) -> Action {
        self.patterns
            .iter()
            .find(|p| p.entity == *entity)
            .map_or(Action::Redact, |p| p.action)
    }

    pub fn enable(&mut self, entity: &Entity) {
        if let Some(i) = entity.index() {
            self.enabled[i] = true;
        }
    }

    pub fn disable(&mut self, entity: &Entity) {
        if let Some(i) = entity.index() {
            self.enabled[i] = false;
        }
    }

    /// Sets a built-in kind's action (a pattern's is given when added).
    pub fn set_action(&mut self, entity: &Entity, action: Action) {
        if let Some(i) = entity.index() {
            self.actions[i] = action;
        }
        for p in self.patterns.iter_mut().filter(|p| p.entity == *entity) {
            p.action = action;
        }
    }

    /// Adds a pattern; its matches are `entity` (default `custom:NAME`) and
    /// get `action` (default: the entity's action, or `redact`).
    pub fn add_pattern(
        &mut self,
        name: &str,
        regex: &str,
        entity: Option<Entity>,
        action: Option<Action>,
    ) -> Result<(), String> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(format!(
                "pattern name {name:?} must be letters, digits, '-' or '_'"
            ));
        }
        let regex = RegexBuilder::new(regex)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        let entity = entity.unwrap_or_else(|| Entity::Custom(Arc::from(name)));
        let action = action.unwrap_or_else(|| {
            if entity.index().is_some() {
                self.action(&entity)
            } else {
                Action::Redact
            }
        });
        self.enable(&entity);
        self.patterns.push(Pattern {
            entity,
            regex,
            action,
        });
        Ok(())
    }

    /// The enabled built-in kinds.
    pub fn enabled(&self) -> Vec<Entity> {
        Entity::BUILTIN
            .iter()
            .filter(|e| self.is_enabled(e))
            .cloned()
            .collect()
    }

    pub(crate) fn custom_rules(&self) -> Vec<CustomRule> {
        self.patterns
            .iter()
            .map(|p| CustomRule {
                entity: p.entity.clone(),
                regex: p.regex.clone(),
            })
            .collect()
    }

    /// Builds the profile `[mask.NAME]` describes.
    pub fn from_config(name: &str, cfg: &MaskConfig) -> Result<Profile, ProfileError> {
        let err = |key: String, message: String| ProfileError {
            profile: name.to_owned(),
            key,
            message,
        };
        let entity = |key: String, s: &str| {
            Entity::parse(s).ok_or_else(|| err(key, format!("unknown entity {s:?}")))
        };
        let mut p = match cfg.base.as_deref().unwrap_or(SAFE_HARBOR) {
            SAFE_HARBOR => Profile {
                name: name.to_owned(),
                ..Profile::safe_harbor()
            },
            "none" => Profile::empty(name),
            other => {
                return Err(err(
                    "base".into(),
                    format!("unknown base {other:?} (expected \"safe-harbor\" or \"none\")"),
                ));
            }
        };
        if let Some(list) = &cfg.entities {
            p.enabled = [false; BUILTIN_COUNT];
            for (i, s) in list.iter().enumerate() {
                p.enable(&entity(format!("entities[{i}]"), s)?);
            }
        }
        for (i, s) in cfg.disable.iter().enumerate() {
            p.disable(&entity(format!("disable[{i}]"), s)?);
        }
        for (i, k) in cfg.drop_keys.iter().enumerate() {
            if k.is_empty() {
                return Err(err(format!("drop_keys[{i}]"), "empty key".into()));
            }
            p.keys.remove(k);
        }
        for (k, s) in &cfg.keys {
            p.keys.insert(k, entity(format!("keys.{k}"), s)?);
        }
        for (k, s) in &cfg.key_suffixes {
            p.keys
                .insert_suffix(k, entity(format!("key_suffixes.{k}"), s)?);
        }
        for (i, pat) in cfg.patterns.iter().enumerate() {
            let ent = pat
                .entity
                .as_deref()
                .map(|s| entity(format!("patterns[{i}].entity"), s))
                .transpose()?;
            let act = pat
                .action
                .as_deref()
                .map(|s| {
                    s.parse::<Action>()
                        .map_err(|e| err(format!("patterns[{i}].action"), e))
                })
                .transpose()?;
            p.add_pattern(&pat.name, &pat.regex, ent, act)
                .map_err(|e| err(format!("patterns[{i}]"), e))?;
        }
        for (k, s) in &cfg.actions {
            let e = entity(format!("actions.{k}"), k)?;
            let a = s
                .parse::<Action>()
                .map_err(|m| err(format!("actions.{k}"), m))?;
            if e.index().is_none() && !p.is_enabled(&e) {
                return Err(err(
                    format!("actions.{k}"),
                    "no pattern of that name".into(),
                ));
            }
            p.set_action(&e, a);
        }
        p.images = cfg.images.unwrap_or(p.images);
        p.audio = cfg.audio.unwrap_or(p.audio);
        p.max_bytes = cfg.max_bytes.unwrap_or(p.max_bytes);
        p.max_depth = cfg.max_depth.unwrap_or(p.max_depth);
        p.oversize = cfg.oversize.unwrap_or(p.oversize);
        if p.max_bytes == 0 {
            return Err(err("max_bytes".into(), "must be more than 0".into()));
        }
        if !(1..=4096).contains(&p.max_depth) {
            return Err(err("max_depth".into(), "must be from 1 to 4096".into()));
        }
        Ok(p)
    }
}

/// One `[mask.NAME]` table of the agent's config (serialised back as
/// written, for `check-config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// `"safe-harbor"` (the default) or `"none"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Replaces the base's enabled kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// Kind → action (`redact`, `partial:4`, `tag`, `hash`, `year`, `zip3`,
    /// `null`); `custom:NAME` for a pattern.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, String>,
    /// Key → kind, added to the base's key rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// Key ending → kind (`_phone` covers `home_phone`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_suffixes: BTreeMap<String, String>,
    /// Keys removed from the base's rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<PatternConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<MediaPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<MediaPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// `"refuse"` (the default) or `"stream"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oversize: Option<Oversize>,
}

/// One `[[mask.NAME.patterns]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub regex: String,
    /// A built-in kind to count matches as (`mrn`); default `custom:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> BTreeMap<String, MaskConfig> {
        #[derive(Deserialize)]
        struct File {
            mask: BTreeMap<String, MaskConfig>,
        }
        toml::from_str::<File>(toml_text).unwrap().mask
    }

    #[test]
    fn safe_harbor_defaults() {
        let p = Profile::safe_harbor();
        assert_eq!(p.name, "safe-harbor");
        assert!(Entity::BUILTIN.iter().all(|e| p.is_enabled(e)));
        assert_eq!(p.action(&Entity::Date), Action::Year);
        assert_eq!(p.action(&Entity::Zip), Action::Zip3);
        assert_eq!(p.action(&Entity::Ssn), Action::Redact);
        assert_eq!(p.images, MediaPolicy::Placeholder);
        assert!(p.keys.lookup("ssn").is_some());
    }

    #[test]
    fn from_config_tables() {
        let cfg = parse(
            r#"
            [mask.strict]
            disable = ["url"]
            drop_keys = ["name"]
            images = "drop"
            max_bytes = 1024
            [mask.strict.actions]
            name = "hash"
            ssn = "partial:4"
            "custom:acme" = "tag"
            [mask.strict.keys]
            badge_no = "license"
            [[mask.strict.patterns]]
            name = "acme"
            regex = 'ACME-\d{7}'
            [[mask.strict.patterns]]
            name = "chart"
            regex = 'CH\d{6}'
            entity = "mrn"
            "#,
        );
        let p = Profile::from_config("strict", &cfg["strict"]).unwrap();
        assert!(!p.is_enabled(&Entity::Url));
        assert_eq!(p.action(&Entity::Name), Action::Hash);
        assert_eq!(p.action(&Entity::Ssn), Action::Partial { keep: 4 });
        assert_eq!(p.action(&Entity::Custom("acme".into())), Action::Tag);
        assert!(p.is_enabled(&Entity::Custom("acme".into())));
        assert_eq!(p.keys.lookup("name"), None);
        assert_eq!(p.keys.lookup("Badge No"), Some(&Entity::License));
        assert_eq!(p.images, MediaPolicy::Drop);
        assert_eq!(p.max_bytes, 1024);
        assert_eq!(p.custom_rules().len(), 2);
        assert_eq!(p.custom_rules()[1].entity, Entity::Mrn);
    }

    #[test]
    fn only_listed_entities() {
        let cfg = parse("[mask.min]\nbase = \"none\"\nentities = [\"ssn\"]\n");
        let p = Profile::from_config("min", &cfg["min"]).unwrap();
        assert_eq!(p.enabled(), vec![Entity::Ssn]);
        assert!(p.keys.is_empty());
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |t: &str| {
            let cfg = parse(t);
            let (name, c) = cfg.iter().next().unwrap();
            Profile::from_config(name, c).unwrap_err().to_string()
        };
        assert_eq!(
            bad("[mask.a.actions]\nssn = \"shred\"\n")
                .split(':')
                .next()
                .unwrap(),
            "mask.a.actions.ssn"
        );
        assert!(
            bad("[mask.a]\ndisable = [\"bogus\"]\n")
                .starts_with("mask.a.disable[0]: unknown entity")
        );
        assert!(bad("[mask.a]\nbase = \"hipaa\"\n").starts_with("mask.a.base:"));
        assert!(
            bad("[[mask.a.patterns]]\nname = \"x\"\nregex = \"(\"\n")
                .starts_with("mask.a.patterns[0]:")
        );
        assert!(
            bad("[[mask.a.patterns]]\nname = \"a b\"\nregex = \"x\"\n")
                .starts_with("mask.a.patterns[0]:")
        );
        assert!(bad("[mask.a.actions]\n\"custom:nope\" = \"tag\"\n").contains("no pattern"));
        assert!(bad("[mask.a]\nmax_depth = 0\n").starts_with("mask.a.max_depth"));
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct File {
            mask: BTreeMap<String, MaskConfig>,
        }
        let e = toml::from_str::<File>("[mask.a]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
