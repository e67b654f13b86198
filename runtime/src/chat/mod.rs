//! Between the model and the session: rendering a conversation with the
//! model's own chat template, and taking apart what the model writes.

pub mod check;
pub mod grammar;
mod message;
pub mod parse;
pub mod pyjson;
mod template;

pub use grammar::{json_grammar, tool_grammar, GrammarError, Thinking, ToolChoice};
pub use message::{tool_json, Conversation, FunctionCall, Message, ToolCall};
pub use parse::{
    parse, split_reasoning, Call, CallFormat, Malformed, ParamTypes, Parsed, ParsedCall,
    StreamFilter, ToolList,
};
pub use template::{
    ChatTemplate, RenderLimits, RenderRequest, BUILTIN_TEMPLATES, RENDER_LIMITS, TEMPLATE_FILE,
};
