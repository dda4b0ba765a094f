//! The ways to tune a policy from rankings, what each needs, and its settings: defaults, and the
//! defaults with a person's changes laid over them. The tab lists its methods and fills its knobs
//! from here, and sends back only what the person changed.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::TrainError;
use crate::methods::dpo::DpoConfig;
use crate::methods::group::{GroupConfig, GroupMethod};
use crate::methods::ppo_config::PpoConfig;
use crate::stages::reward::RewardConfig;
use crate::stages::supervised::SftSettings;

/// A way to turn rankings into a tuned policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Reward model + PPO with a value model (InstructGPT).
    Ppo,
    /// Group-relative advantages, no value model (DeepSeekMath).
    Grpo,
    /// Leave-one-out baselines, no value model (Ahmadian et al. 2024).
    Rloo,
    /// The policy learns from the rankings directly: no reward model, no value model.
    Dpo,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Ppo, Method::Grpo, Method::Rloo, Method::Dpo];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ppo => "ppo",
            Self::Grpo => "grpo",
            Self::Rloo => "rloo",
            Self::Dpo => "dpo",
        }
    }

    /// PPO, GRPO and RLOO optimise the reward model's score; DPO reads the rankings themselves.
    pub fn needs_reward_model(self) -> bool {
        self != Self::Dpo
    }

    /// Whether a step is a rollout iteration (sample, score, update) or a batch of rankings.
    pub fn samples_answers(self) -> bool {
        self != Self::Dpo
    }

    /// This method's default settings as JSON, with every implicit value spelled out (the group
    /// methods' beta resolved), so a page can show them.
    pub fn default_settings(self) -> serde_json::Value {
        let json = |value: Result<serde_json::Value, serde_json::Error>| value.expect("settings serialise");
        match self {
            Self::Ppo => json(serde_json::to_value(PpoConfig::default())),
            Self::Dpo => json(serde_json::to_value(DpoConfig::default())),
            Self::Grpo | Self::Rloo => {
                let group = self.group_config(&serde_json::Value::Null).expect("defaults are valid");
                json(serde_json::to_value(GroupConfig { beta: Some(group.beta()), ..group }))
            }
        }
    }

    /// GRPO or RLOO settings: the defaults with `changes` laid over them, the method fixed.
    pub fn group_config(self, changes: &serde_json::Value) -> Result<GroupConfig, TrainError> {
        let method = match self {
            Self::Grpo => GroupMethod::Grpo,
            Self::Rloo => GroupMethod::Rloo,
            other => return Err(TrainError::Setting(format!("{other} is not a group method"))),
        };
        let defaults = GroupConfig { method, ..GroupConfig::default() };
        let settings = with_changes(defaults, changes, self.name())?;
        settings.validate()?;
        Ok(GroupConfig { method, ..settings })
    }
}

impl From<GroupMethod> for Method {
    fn from(method: GroupMethod) -> Self {
        match method {
            GroupMethod::Grpo => Self::Grpo,
            GroupMethod::Rloo => Self::Rloo,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| TrainError::Setting(format!("unknown method {s:?}; use ppo, grpo, rloo or dpo")))
    }
}

/// `defaults` with the fields of `changes` (a JSON object, or null for none) replaced; an unknown
/// field or a value of the wrong type is an error naming it and `what` the settings are for.
pub fn with_changes<T: Serialize + DeserializeOwned>(defaults: T, changes: &serde_json::Value, what: &str) -> Result<T, TrainError> {
    let mut settings = serde_json::to_value(defaults).map_err(|e| TrainError::Setting(e.to_string()))?;
    let changes = match changes {
        serde_json::Value::Null => {
            return serde_json::from_value(settings).map_err(|e| TrainError::Setting(format!("{what} settings: {e}")));
        }
        serde_json::Value::Object(changes) => changes,
        other => return Err(TrainError::Setting(format!("{what} settings must be an object, not {other}"))),
    };
    let base = settings.as_object_mut().expect("settings are a struct");
    for (field, value) in changes {
        if !base.contains_key(field) {
            return Err(TrainError::Setting(format!("{what} settings: there is no setting {field:?}")));
        }
        base.insert(field.clone(), value.clone());
    }
    serde_json::from_value(settings).map_err(|e| TrainError::Setting(format!("{what} settings: {e}")))
}

/// Every setting the tab shows, defaults decided here: `{reward, ppo, grpo, rloo, dpo}`.
pub fn all_default_settings() -> serde_json::Value {
    let mut all = serde_json::Map::new();
    all.insert("sft".into(), serde_json::to_value(SftSettings::default()).expect("settings serialise"));
    // What a stage's `lora` setting holds when the person switches LoRA on.
    all.insert("lora".into(), serde_json::to_value(tinyrlhf_model::LoraConfig::default()).expect("settings serialise"));
    all.insert("reward".into(), serde_json::to_value(RewardConfig::default()).expect("settings serialise"));
    for method in Method::ALL {
        all.insert(method.name().into(), method.default_settings());
    }
    serde_json::Value::Object(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::settings::TrainSettings;

    #[test]
    fn changes_replace_only_the_named_fields() {
        let ppo: PpoConfig = with_changes(PpoConfig::default(), &serde_json::json!({"lr": 1e-3}), "PPO").unwrap();
        assert_eq!(ppo, PpoConfig { train: TrainSettings { lr: 1e-3, ..PpoConfig::default().train }, ..PpoConfig::default() });
        let unchanged: PpoConfig = with_changes(PpoConfig::default(), &serde_json::Value::Null, "PPO").unwrap();
        assert_eq!(unchanged, PpoConfig::default());
    }

    #[test]
    fn an_unknown_or_mistyped_setting_is_named() {
        let typo = with_changes(DpoConfig::default(), &serde_json::json!({"betta": 0.2}), "DPO").unwrap_err().to_string();
        assert!(typo.contains("\"betta\""), "{typo}");
        let mistyped = with_changes(DpoConfig::default(), &serde_json::json!({"epochs": "six"}), "DPO").unwrap_err().to_string();
        assert!(mistyped.contains("DPO settings"), "{mistyped}");
    }

    #[test]
    fn group_defaults_spell_out_each_methods_beta() {
        assert_eq!(Method::Grpo.default_settings()["beta"], 0.04);
        assert_eq!(Method::Rloo.default_settings()["beta"], 0.05);
        assert_eq!(Method::Rloo.group_config(&serde_json::Value::Null).unwrap().method, GroupMethod::Rloo);
        let out_of_range = Method::Grpo.group_config(&serde_json::json!({"samples_per_prompt": 1})).unwrap_err().to_string();
        assert!(out_of_range.contains("samples_per_prompt"), "{out_of_range}");
    }

    #[test]
    fn every_method_has_a_name_that_parses_back() {
        for method in Method::ALL {
            assert_eq!(method.name().parse::<Method>().unwrap(), method);
        }
        assert!("ppo2".parse::<Method>().is_err());
        assert!(all_default_settings()["reward"]["epochs"].is_number());
    }
}
