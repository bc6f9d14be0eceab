//! The chat template: how a conversation becomes the prompt text the model was tuned on.
//!
//! SmolLM2-Instruct uses ChatML. Its GGUF `tokenizer.chat_template` (a Jinja template) inserts
//! a default system message when the conversation does not start with one:
//!
//! ```text
//! <|im_start|>system
//! You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
//! <|im_start|>user
//! …<|im_end|>
//! <|im_start|>assistant
//! ```
//!
//! edgesim does not run Jinja; it renders ChatML itself and refuses a template that is not
//! ChatML, and takes the default system message from the template text.

use crate::llm::gguf::GgufFile;
use crate::llm::LlmError;

pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// The metadata key holding the Jinja chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// A ChatML template and its default system message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    pub default_system: Option<String>,
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

impl ChatTemplate {
    /// Reads `tokenizer.chat_template`, checks it is ChatML and finds its default system message.
    pub fn from_gguf(file: &GgufFile) -> Result<ChatTemplate, LlmError> {
        let template = file.require_str(TEMPLATE_KEY)?;
        ChatTemplate::from_template_text(template)
            .map_err(|message| file.metadata_error(TEMPLATE_KEY, message))
    }

    /// Parses the Jinja text (only what edgesim needs from it).
    pub fn from_template_text(template: &str) -> Result<ChatTemplate, String> {
        if !(template.contains(IM_START) && template.contains(IM_END)) {
            return Err(
                "not a ChatML template (no <|im_start|>/<|im_end|>); edgesim renders ChatML only"
                    .into(),
            );
        }
        // The default system message is the literal between "<|im_start|>system" + newline and
        // "<|im_end|>" in the branch taken when messages[0] is not a system message. The newline
        // is a real one in SmolLM2's file; a Jinja escape ("\n") is accepted too.
        let default_system = ["\n", "\\n"].iter().find_map(|newline| {
            let marker = format!("{IM_START}system{newline}");
            let at = template.find(&marker)?;
            let rest = &template[at + marker.len()..];
            rest.find(IM_END).map(|end| rest[..end].to_string())
        });
        Ok(ChatTemplate { default_system })
    }

    /// The prompt text for `messages`, ending with the assistant's opening so the model
    /// writes the reply.
    pub fn render(&self, messages: &[Message]) -> String {
        let mut text = String::new();
        if let Some(system) = &self.default_system {
            if messages.first().is_none_or(|m| m.role != "system") {
                text.push_str(&format!("{IM_START}system\n{system}{IM_END}\n"));
            }
        }
        for message in messages {
            text.push_str(&format!(
                "{IM_START}{}\n{}{IM_END}\n",
                message.role, message.content
            ));
        }
        text.push_str(&format!("{IM_START}assistant\n"));
        text
    }

    /// A one-question conversation.
    pub fn render_user(&self, prompt: &str) -> String {
        self.render(&[Message::new("user", prompt)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template as stored in SmolLM2-135M-Instruct.Q4_1.gguf (with real newlines).
    const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_renders_chatml_with_its_default_system_message() {
        let template = ChatTemplate::from_template_text(SMOLLM2_TEMPLATE).unwrap();
        assert_eq!(
            template.default_system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(
            template.render_user("Hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let own_system = template.render(&[
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
        ]);
        assert_eq!(
            own_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_jinja_escaped_newline_is_accepted_too() {
        let template =
            ChatTemplate::from_template_text("{{ '<|im_start|>system\\nBe kind.<|im_end|>' }}")
                .unwrap();
        assert_eq!(template.default_system.as_deref(), Some("Be kind."));
        let none =
            ChatTemplate::from_template_text("{{ '<|im_start|>' + role }}{{ '<|im_end|>' }}")
                .unwrap();
        assert_eq!(none.default_system, None);
        assert_eq!(
            none.render_user("Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn non_chatml_template_is_refused() {
        assert!(ChatTemplate::from_template_text("[INST] {{ content }} [/INST]").is_err());
    }
}
