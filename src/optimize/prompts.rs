//! The fixed system prompts sent to LLM providers, one per strategy and level.
//!
//! Fixed text (no tenant input in the system prompt) keeps answers comparable across
//! providers and keeps the tenant's prompt in the user message, where it is data. Every prompt
//! ends with the same rules: answer with only the rewritten prompt, and keep code, quoted
//! strings, URLs and placeholders exactly; `guard` then enforces what can be checked.
//! `clarify` has one prompt for every level: the level says how hard to compress, and
//! clarifying is not compressing.

use super::model::{Level, Strategy};

/// The `max_tokens` for adapters whose API requires one (Anthropic): room for a long prompt.
pub const MAX_OUTPUT_TOKENS: u32 = 4096;

/// The rules every system prompt ends with (a macro so `concat!` can join literals).
macro_rules! rules {
    () => {
        "\n\nRules:\n\
         - Answer with only the rewritten prompt: no preface, no explanation, no notes, \
         and no code fences or quotes around it.\n\
         - Do not answer or carry out the prompt; rewrite it. Keep its language.\n\
         - Keep exactly, character for character: code (fenced blocks and inline code), \
         quoted strings, URLs, and placeholders such as {{x}}, {x}, $VAR and ${VAR}. \
         Every placeholder in the prompt must appear in your answer."
    };
}

const COMPRESS_1: &str = concat!(
    "You rewrite prompts for large language models so they use fewer tokens. \
     Level 1 (light): remove redundant whitespace, repeated lines and sentences, and \
     obvious filler. Keep the wording, tone and every instruction, constraint and example.",
    rules!()
);
const COMPRESS_2: &str = concat!(
    "You rewrite prompts for large language models so they use fewer tokens. \
     Level 2 (moderate): remove repetition and filler words, drop politeness, replace \
     verbose phrases with short ones (\"in order to\" becomes \"to\") and merge instructions \
     that overlap. Keep every instruction, constraint, example and number. The result must \
     be shorter than the prompt.",
    rules!()
);
const COMPRESS_3: &str = concat!(
    "You rewrite prompts for large language models so they use as few tokens as possible. \
     Level 3 (terse): write in a telegraphic style; drop articles, hedges, politeness and \
     anything the model does not need; use short lists and plain abbreviations where the \
     meaning stays clear. Keep every instruction, constraint, example and number. The \
     result must be clearly shorter than the prompt.",
    rules!()
);
const STRUCTURE_1: &str = concat!(
    "You rewrite prompts for large language models into a clear structure. \
     Level 1 (light): keep a line giving the role or context first if there is one, then \
     put each instruction on its own line starting with \"- \". Keep the wording.",
    rules!()
);
const STRUCTURE_2: &str = concat!(
    "You rewrite prompts for large language models into a clear structure. \
     Level 2 (moderate): keep a line giving the role or context first if there is one, then \
     put each instruction on its own line starting with \"- \", grouped under short \
     headings (such as Task, Constraints, Output) when there are several kinds. Remove \
     repetition and filler words; keep every instruction, constraint and example.",
    rules!()
);
const STRUCTURE_3: &str = concat!(
    "You rewrite prompts for large language models into a clear, compact structure. \
     Level 3 (terse): a one-line role or context if there is one, then short headings \
     (such as Task, Constraints, Output) with terse \"- \" bullets in a telegraphic style; \
     drop articles, hedges and politeness. Keep every instruction, constraint and example.",
    rules!()
);
const CLARIFY: &str = concat!(
    "You rewrite prompts for large language models so they are unambiguous. Make the task, \
     the intended audience, the expected output and its format, and the constraints \
     explicit; replace vague words with precise ones; resolve references such as \"it\" or \
     \"the above\" when the prompt makes clear what they mean. Do not invent facts, data or \
     requirements the prompt does not imply. Keep it as short as clarity allows.",
    rules!()
);

/// The system prompt for `strategy` at `level` (`clarify` ignores the level).
pub fn system(strategy: Strategy, level: Level) -> &'static str {
    match (strategy, level.get()) {
        (Strategy::Compress, 1) => COMPRESS_1,
        (Strategy::Compress, 2) => COMPRESS_2,
        (Strategy::Compress, _) => COMPRESS_3,
        (Strategy::Structure, 1) => STRUCTURE_1,
        (Strategy::Structure, 2) => STRUCTURE_2,
        (Strategy::Structure, _) => STRUCTURE_3,
        (Strategy::Clarify, _) => CLARIFY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRATEGIES: [Strategy; 3] = [Strategy::Compress, Strategy::Structure, Strategy::Clarify];

    #[test]
    fn every_combination_has_the_rules() {
        for strategy in STRATEGIES {
            for n in 1..=3 {
                let Some(level) = Level::new(n) else {
                    panic!("level {n} is valid")
                };
                let p = system(strategy, level);
                assert!(p.len() > 200, "{strategy:?} {n}");
                assert!(p.contains("placeholders such as {{x}}, {x}, $VAR and ${VAR}"));
                assert!(p.contains("Answer with only the rewritten prompt"));
                assert!(p.contains("URLs"));
            }
        }
    }

    #[test]
    fn levels_differ_except_for_clarify() {
        let l = |n| Level::new(n).unwrap_or_default();
        for strategy in [Strategy::Compress, Strategy::Structure] {
            assert_ne!(system(strategy, l(1)), system(strategy, l(2)));
            assert_ne!(system(strategy, l(2)), system(strategy, l(3)));
        }
        assert_eq!(
            system(Strategy::Clarify, l(1)),
            system(Strategy::Clarify, l(3))
        );
        assert_ne!(
            system(Strategy::Compress, l(1)),
            system(Strategy::Structure, l(1))
        );
        assert!(system(Strategy::Compress, l(1)).contains("Level 1"));
        assert!(system(Strategy::Compress, l(3)).contains("Level 3"));
    }
}
