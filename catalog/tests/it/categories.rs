//! Every category, positive and negative cases through one `check(input, expect)` helper, the
//! way `shadowai-agent match` asks the catalog.
//!
//! `input` is `dns:<name>`, `cmd:<command line>` (split on spaces) or `ext:<extension id>`;
//! `expect` is `"<category> <product>"` or `"-"` for no match.

use shadowai_catalog::ProcessFacts;

use crate::catalog;

#[track_caller]
fn check(input: &str, expect: &str) {
    let catalog = catalog();
    let found = if let Some(name) = input.strip_prefix("dns:") {
        catalog.match_domain(name).map(|m| m.product)
    } else if let Some(command) = input.strip_prefix("cmd:") {
        let args: Vec<String> = command.split(' ').map(str::to_owned).collect();
        let program = args[0].rsplit('/').next().unwrap_or_default();
        let exe = if args[0].contains('/') {
            args[0].as_str()
        } else {
            ""
        };
        let facts = ProcessFacts {
            name: program,
            exe,
            args: &args,
        };
        catalog.match_process(&facts).map(|m| m.product)
    } else if let Some(id) = input.strip_prefix("ext:") {
        catalog.extension(id).map(|m| m.product)
    } else {
        panic!("input must start with dns:, cmd: or ext: ({input})")
    };
    let actual = match found {
        None => "-".to_owned(),
        Some(product) => format!("{} {}", product.category.as_str(), product.id),
    };
    assert_eq!(actual, expect, "{input}");
}

#[test]
fn chat_apps() {
    check("dns:chatgpt.com", "chat_app openai.chatgpt");
    check("dns:claude.ai", "chat_app anthropic.claude");
    check("dns:gemini.google.com", "chat_app google.gemini");
    check("dns:www.perplexity.ai", "chat_app perplexity.perplexity");
    check("dns:gemini.com", "-");
    check("dns:chatgpt.com.evil.example", "-");
    check("dns:mail.google.com", "-");
}

#[test]
fn model_apis() {
    check("dns:api.openai.com", "model_api openai.api");
    check("dns:api.anthropic.com", "model_api anthropic.api");
    check(
        "dns:generativelanguage.googleapis.com",
        "model_api google.gemini-api",
    );
    check(
        "dns:contoso.openai.azure.com",
        "model_api microsoft.azure-openai",
    );
    check("dns:storage.googleapis.com", "-");
    check("dns:portal.azure.com", "-");
    check("dns:openai.azure.com", "-");
}

#[test]
fn coding_assistants() {
    check(
        "dns:api.business.githubcopilot.com",
        "coding_assistant github.copilot",
    );
    check("dns:api2.cursor.sh", "coding_assistant anysphere.cursor");
    check("ext:GitHub.copilot", "coding_assistant github.copilot");
    check("ext:saoudrizwan.claude-dev", "coding_assistant cline.cline");
    check(
        "cmd:node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
        "coding_assistant anthropic.claude-code",
    );
    check("cmd:codex --yolo", "coding_assistant openai.codex");
    check("dns:api.github.com", "-");
    check("dns:raw.githubusercontent.com", "-");
    check("ext:ms-python.python", "-");
    check(
        "cmd:node /usr/lib/node_modules/npm/bin/npm-cli.js install",
        "-",
    );
}

#[test]
fn autonomous_agents() {
    check("cmd:goose session", "autonomous_agent block.goose");
    check("cmd:openclaw gateway", "autonomous_agent openclaw.openclaw");
    check("dns:manus.im", "autonomous_agent manus.manus");
    check("cmd:goosebumps --help", "-");
    check("dns:manus.com.evil.example", "-");
}

#[test]
fn agent_frameworks() {
    check("cmd:crewai run", "agent_framework crewai.crewai");
    check("cmd:langflow run", "agent_framework langflow.langflow");
    check(
        "dns:api.smith.langchain.com",
        "agent_framework langchain.langsmith",
    );
    check("cmd:python3 -m pytest", "-");
    check("dns:langchain.com.evil.example", "-");
}

#[test]
fn mcp_servers() {
    check("dns:mcp.notion.com", "mcp_server notion.remote-mcp");
    check("dns:api.mcp.github.com", "mcp_server github.mcp-server");
    check(
        "cmd:mcp-server-git --repository /src/app",
        "mcp_server mcp.git",
    );
    check(
        "cmd:github-mcp-server stdio",
        "mcp_server github.mcp-server",
    );
    check("dns:www.notion.so", "-");
    check("dns:api.github.com", "-");
    check("cmd:git status", "-");
}

#[test]
fn local_model_runtimes() {
    check("cmd:ollama serve", "local_model_runtime ollama.ollama");
    check(
        "cmd:/usr/local/bin/llama-server -m model.gguf",
        "local_model_runtime ggml.llama-cpp",
    );
    check(
        "cmd:vllm serve meta-llama/Llama-3.1-8B",
        "local_model_runtime vllm.vllm",
    );
    check(
        "dns:registry.ollama.ai",
        "local_model_runtime ollama.ollama",
    );
    check("cmd:llama --help", "-");
    check("dns:myollama.com", "-");
}

#[test]
fn model_hubs() {
    check("dns:huggingface.co", "model_hub huggingface.hub");
    check("dns:cdn-lfs.huggingface.co", "model_hub huggingface.hub");
    check("dns:civitai.com", "model_hub civitai.civitai");
    check("dns:huggingface.co.evil.example", "-");
    check("dns:hub.docker.com", "-");
}

#[test]
fn inference_gateways() {
    check("dns:openrouter.ai", "inference_gateway openrouter.router");
    check(
        "dns:router.huggingface.co",
        "inference_gateway huggingface.inference",
    );
    check("dns:openrouter.ai.evil.example", "-");
    check("dns:api.stripe.com", "-");
}

#[test]
fn media_generation() {
    check(
        "dns:www.midjourney.com",
        "media_generation midjourney.midjourney",
    );
    check(
        "dns:api.elevenlabs.io",
        "media_generation elevenlabs.elevenlabs",
    );
    check("dns:sora.com", "media_generation openai.sora");
    check("dns:vimeo.com", "-");
    check("dns:elevenlabs.io.evil.example", "-");
}

#[test]
fn productivity_ai() {
    check("dns:otter.ai", "productivity_ai otter.otter");
    check(
        "dns:app.grammarly.com",
        "productivity_ai grammarly.grammarly",
    );
    check("dns:zoom.us", "-");
    check("dns:jasper.com", "-");
}

#[test]
fn browser_ai() {
    check("dns:ai-chat.bsg.brave.com", "browser_ai brave.leo");
    check("dns:sider.ai", "browser_ai sider.sider");
    check("dns:brave.com", "-");
    check("dns:search.brave.com", "-");
}
