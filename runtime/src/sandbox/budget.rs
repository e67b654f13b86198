//! Per-session call counting: `[session] max_tool_calls` and per-tool
//! `max_calls`.

use super::error::{CallError, ErrorKind};
use super::tool::LoadedTool;
use crate::policy::Policy;
use std::collections::HashMap;

/// What a session has spent of its call allowance. Every attempt counts,
/// including ones that then fail, so a model cannot spin on bad calls.
#[derive(Debug, Clone)]
pub struct CallBudget {
    max_total: u32,
    total: u32,
    per_tool: HashMap<String, u32>,
}

impl CallBudget {
    /// A full budget under `policy`.
    pub fn new(policy: &Policy) -> CallBudget {
        CallBudget {
            max_total: policy.session.max_tool_calls,
            total: 0,
            per_tool: HashMap::new(),
        }
    }

    /// Calls made so far.
    pub fn used(&self) -> u32 {
        self.total
    }

    /// Counts one call of `tool`, or refuses it with `denied`.
    pub fn charge(&mut self, tool: &LoadedTool) -> Result<(), CallError> {
        self.check_total()?;
        let name = &tool.policy.name;
        let used = self.per_tool.get(name).copied().unwrap_or(0);
        if let Some(max) = tool.policy.max_calls {
            if used >= max {
                return Err(CallError::new(
                    ErrorKind::Denied,
                    format!("{name} may be called at most {max} times per session (max_calls); answer with what you have"),
                ));
            }
        }
        self.total += 1;
        self.per_tool.insert(name.clone(), used + 1);
        Ok(())
    }

    /// Counts one attempt that names no enabled tool (a malformed call, an
    /// unknown tool) against `[session] max_tool_calls`, or refuses it with
    /// `denied`: otherwise one generation could hold thousands of them, each
    /// checked and logged.
    pub fn charge_attempt(&mut self) -> Result<(), CallError> {
        self.check_total()?;
        self.total += 1;
        Ok(())
    }

    fn check_total(&self) -> Result<(), CallError> {
        if self.total >= self.max_total {
            return Err(CallError::new(
                ErrorKind::Denied,
                format!("this session has used all {} tool calls its policy allows ([session] max_tool_calls)", self.max_total),
            ));
        }
        Ok(())
    }
}
