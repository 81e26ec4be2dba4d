//! The typed values of prompt optimisation, parsed once: provider names, strategies and
//! compression levels.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A provider a tenant can call. `local` is built in (pure Rust, no key, no network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum ProviderName {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[serde(rename = "deepseek")]
    DeepSeek,
    #[serde(rename = "gemini")]
    Gemini,
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    #[serde(rename = "local")]
    Local,
}

impl ProviderName {
    pub const ALL: [ProviderName; 6] = [
        ProviderName::OpenAi,
        ProviderName::Anthropic,
        ProviderName::DeepSeek,
        ProviderName::Gemini,
        ProviderName::OpenAiCompatible,
        ProviderName::Local,
    ];
    pub const NAMES: [&'static str; 6] = [
        "openai",
        "anthropic",
        "deepseek",
        "gemini",
        "openai-compatible",
        "local",
    ];

    pub fn parse(s: &str) -> Option<ProviderName> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::OpenAi => "openai",
            ProviderName::Anthropic => "anthropic",
            ProviderName::DeepSeek => "deepseek",
            ProviderName::Gemini => "gemini",
            ProviderName::OpenAiCompatible => "openai-compatible",
            ProviderName::Local => "local",
        }
    }

    /// The wire protocol the provider speaks.
    pub fn wire(self) -> Wire {
        match self {
            ProviderName::OpenAi | ProviderName::DeepSeek | ProviderName::OpenAiCompatible => {
                Wire::ChatCompletions
            }
            ProviderName::Anthropic => Wire::AnthropicMessages,
            ProviderName::Gemini => Wire::GeminiGenerate,
            ProviderName::Local => Wire::Local,
        }
    }
}

/// The request/answer shape a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST {base}/chat/completions` (OpenAI, DeepSeek, OpenAI-compatible).
    ChatCompletions,
    /// `POST {base}/v1/messages`.
    AnthropicMessages,
    /// `POST {base}/v1beta/models/{model}:generateContent`.
    GeminiGenerate,
    /// In-process.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewer tokens, same meaning (the default).
    #[default]
    Compress,
    /// Instructions as a bulleted list.
    Structure,
    /// Rewritten to be unambiguous (LLM providers only).
    Clarify,
}

impl Strategy {
    pub const NAMES: [&'static str; 3] = ["compress", "structure", "clarify"];

    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "compress" => Strategy::Compress,
            "structure" => Strategy::Structure,
            "clarify" => Strategy::Clarify,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Compress => "compress",
            Strategy::Structure => "structure",
            Strategy::Clarify => "clarify",
        }
    }
}

/// How hard to compress: 1 (safe clean-up) to 3 (terse). Default 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Level(u8);

impl Level {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 3;
    pub const DEFAULT: Level = Level(2);

    pub fn new(n: i64) -> Option<Level> {
        (i64::from(Self::MIN)..=i64::from(Self::MAX))
            .contains(&n)
            .then_some(Level(n as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Level {
    fn default() -> Level {
        Level::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in ProviderName::ALL {
            assert_eq!(ProviderName::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::json!(p.as_str())
            );
        }
        assert_eq!(ProviderName::NAMES.len(), ProviderName::ALL.len());
        assert_eq!(ProviderName::parse("OpenAI"), None);
        for s in Strategy::NAMES {
            assert_eq!(Strategy::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(Strategy::parse("shrink"), None);
    }

    #[test]
    fn levels_are_one_to_three() {
        assert_eq!(Level::new(0), None);
        assert_eq!(Level::new(4), None);
        assert_eq!(Level::new(1).unwrap().get(), 1);
        assert_eq!(Level::default().get(), 2);
    }
}
