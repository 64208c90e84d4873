//! `hyp backfill`: read Claude Code and Codex history and expand it into
//! `ai_gateway_messages` rows for the cache.
