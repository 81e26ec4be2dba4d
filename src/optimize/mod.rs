//! Prompt optimisation (module P): the tenant's LLM providers, `POST /optimize`, its history
//! and stats, and batches run by the jobs Worker.
//!
//! Pure parts: `model` (typed values), `tokens` (the one estimator), `local` (the built-in
//! optimiser), `guard` (what an LLM answer must keep), `prompts` (the fixed system prompts),
//! `adapters` (each provider's request and answer shapes).

pub mod adapters;
pub mod guard;
pub mod local;
pub mod model;
pub mod prompts;
pub mod tokens;
