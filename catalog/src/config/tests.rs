use serde_json::json;

use super::*;
use crate::model::{ConfigFormat, ConfigKind, OsPaths, Severity};

#[test]
fn keys_follow_dotted_paths_and_flat_dotted_keys() {
    let document = json!({
        "permissions": { "defaultMode": "bypassPermissions", "allow": ["Bash(*)", "Read"] },
        "chat.tools.autoApprove": true,
        "chat": { "tools": { "other": 1 } },
        "projects": { "/a": { "mcpServers": { "x": {} } }, "/b": { "mcpServers": { "y": {} } } },
        "list": [ { "v": 1 }, { "v": 2 } ]
    });
    assert_eq!(
        lookup_key(&document, "permissions.defaultMode"),
        [&json!("bypassPermissions")]
    );
    assert_eq!(
        lookup_key(&document, "chat.tools.autoApprove"),
        [&json!(true)]
    );
    assert_eq!(lookup_key(&document, "chat.tools.other"), [&json!(1)]);
    assert_eq!(lookup_key(&document, "projects.*.mcpServers").len(), 2);
    assert_eq!(lookup_key(&document, "list.1.v"), [&json!(2)]);
    assert_eq!(lookup_key(&document, "list.*.v"), [&json!(1), &json!(2)]);
    assert!(lookup_key(&document, "list.7.v").is_empty());
    assert!(lookup_key(&document, "permissions.defaultMode.deeper").is_empty());
    assert!(lookup_key(&document, "missing").is_empty());
}

#[test]
fn settings_tests_compare_values_as_documented() {
    let equals = SettingTest::Equals("never".into());
    assert!(equals.is_met_by(&json!("never")));
    assert!(!equals.is_met_by(&json!("Never")));
    assert!(!equals.is_met_by(&json!(["never"])));
    assert!(SettingTest::Equals("0".into()).is_met_by(&json!(0)));
    assert!(SettingTest::Equals("false".into()).is_met_by(&json!(false)));

    assert!(SettingTest::IsTrue.is_met_by(&json!(true)));
    assert!(!SettingTest::IsTrue.is_met_by(&json!("true")));
    assert!(!SettingTest::IsTrue.is_met_by(&json!(false)));

    let contains = SettingTest::Contains("Bash(*)".into());
    assert!(contains.is_met_by(&json!(["Read", "Bash(*)"])));
    assert!(!contains.is_met_by(&json!(["Bash(ls)"])));
    assert!(contains.is_met_by(&json!("x Bash(*) y")));
    assert!(contains.is_met_by(&json!({ "Bash(*)": true })));
    assert!(!contains.is_met_by(&json!(null)));
}

fn config(mcp_key: Option<&str>) -> ConfigFile {
    ConfigFile {
        id: "data/x.toml#x.y/config/c".into(),
        name: "c".into(),
        kind: ConfigKind::Mcp,
        format: ConfigFormat::Json,
        paths: OsPaths::default(),
        mcp_key: mcp_key.map(str::to_owned),
        note: None,
        settings: vec![ConfigSetting {
            id: "s".into(),
            name: "s".into(),
            key: "permissions.defaultMode".into(),
            test: SettingTest::Equals("bypassPermissions".into()),
            risk: vec!["approval_bypass".into()],
            severity: Severity::Critical,
            explanation: "x".into(),
        }],
    }
}

#[test]
fn config_files_list_servers_and_raised_settings() {
    let document = json!({
        "permissions": { "defaultMode": "bypassPermissions" },
        "mcpServers": {
            "fs": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem"] },
            "remote": { "url": "https://mcp.example/mcp" }
        }
    });
    let file = config(Some("mcpServers"));
    assert_eq!(file.raised_settings(&document).len(), 1);
    assert!(file.raised_settings(&json!({})).is_empty());
    let servers = file.mcp_servers(&document);
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["fs", "remote"]);
    assert_eq!(servers[0].url(), None);
    assert_eq!(servers[1].url(), Some("https://mcp.example/mcp"));

    let listed = json!({ "mcpServers": [ { "name": "a", "command": "x" }, { "command": "y" } ] });
    let names: Vec<String> = file
        .mcp_servers(&listed)
        .into_iter()
        .map(|s| s.name.into_owned())
        .collect();
    assert_eq!(names, ["a", "1"]);
    assert!(config(None).mcp_servers(&document).is_empty());
}

#[test]
fn paths_expand_their_leading_placeholder() {
    let vars = PathVars {
        home: Some("/home/u"),
        appdata: Some(r"C:\Users\u\AppData\Roaming"),
        ..PathVars::default()
    };
    assert_eq!(
        expand_path("~/.cursor/mcp.json", &vars).as_deref(),
        Some("/home/u/.cursor/mcp.json")
    );
    assert_eq!(
        expand_path(r"%APPDATA%\Claude\claude_desktop_config.json", &vars).as_deref(),
        Some(r"C:\Users\u\AppData\Roaming\Claude\claude_desktop_config.json")
    );
    assert_eq!(expand_path(r"%LOCALAPPDATA%\x", &vars), None);
    assert_eq!(
        expand_path("/etc/x.json", &vars).as_deref(),
        Some("/etc/x.json")
    );
    assert_eq!(expand_path("./.mcp.json", &vars), None);
}

#[test]
fn paths_are_checked_per_os() {
    assert!(check_path("~/.cursor/mcp.json", Os::Linux).is_ok());
    assert!(check_path("/Applications/ChatGPT.app", Os::Macos).is_ok());
    assert!(check_path("./.vscode/mcp.json", Os::Macos).is_ok());
    assert!(check_path(r"%APPDATA%\Claude\claude_desktop_config.json", Os::Windows).is_ok());
    assert!(check_path(r"%LOCALAPPDATA%\Packages\Claude_*\x.json", Os::Windows).is_ok());
    assert!(check_path(r"C:\ProgramData\x.json", Os::Windows).is_ok());
    assert!(check_path(r"~\.cursor\mcp.json", Os::Windows).is_ok());
    for (bad, os) in [
        ("", Os::Linux),
        (".cursor/mcp.json", Os::Linux),
        ("$HOME/.cursor/mcp.json", Os::Linux),
        ("%APPDATA%/x", Os::Linux),
        ("~/../etc/passwd", Os::Linux),
        ("~/a/**/b", Os::Macos),
        (r"%TEMP%\x", Os::Windows),
        (r"%APPDATA%\%X%", Os::Windows),
        (r"Users\x", Os::Windows),
        ("~/a\u{7}", Os::Linux),
    ] {
        assert!(check_path(bad, os).is_err(), "{bad:?} on {os:?}");
    }
}

#[test]
fn ids_and_keys_are_checked() {
    assert!(check_key("permissions.defaultMode").is_ok());
    assert!(check_key("projects.*.mcpServers").is_ok());
    for bad in ["", "a..b", ".a", "a.", "a b", &"a.".repeat(20)] {
        assert!(check_key(bad).is_err(), "{bad:?}");
    }
    assert!(check_bundle_id("com.openai.chat").is_ok());
    assert!(check_bundle_id("ChatGPT").is_err());
    assert!(check_bundle_id("com..x").is_err());
    assert!(check_extension("GitHub.copilot").is_ok());
    assert!(check_extension("saoudrizwan.claude-dev").is_ok());
    assert!(check_extension("com.intellij.ml.llm").is_ok());
    for bad in ["", "x", ".x", "a..b", "a b", "a.", "a/b"] {
        assert!(check_extension(bad).is_err(), "{bad:?}");
    }
}
