//! Agentic lineage: what AI agents start. A process whose ancestor is an AI agent (Claude Code,
//! Codex, Gemini CLI, Aider, Goose, OpenClaw, ...) is reported when it is
//!
//! * a shell (`agent_shell`),
//! * an infrastructure or data CLI — `kubectl`, `terraform`, `helm`, `aws`, `gcloud`, `az`,
//!   `docker`, `ssh`, `psql`, `mysql`, `mongosh`, ..., `rm -r` on an absolute path,
//!   `git push --force` (`agent_infra_cli`),
//! * an MCP server (`agent_mcp_server`): a catalog MCP server, or an `npx`/`uvx`/`docker run`
//!   command whose package names MCP.
//!
//! Each kind is its own rule (`agent/lineage#agent_shell/<name>`, ...) and its own detection,
//! attributed to the agent's product, with the chain agent → shell → command as ancestors. The
//! lists are the documented tables below ([`SHELLS`], [`INFRA_CLIS`], [`MCP_LAUNCHERS`]).
//!
//! Which matches count as agents: products of the categories `coding_assistant`,
//! `autonomous_agent` and `agent_framework`, except process rules for desktop apps, IDEs and
//! language servers (their integrated terminals start shells for the user, not for an agent).

use std::collections::{HashMap, HashSet};

use shadowai_catalog::{Catalog, Category, ProcessFacts};

use crate::detect::{
    Ancestor, Detection, Evidence, ProcessEventKind, ProcessRef, RawProcess, Signal,
};

/// Shells, by program name.
pub const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "fish",
    "ksh",
    "mksh",
    "tcsh",
    "csh",
    "ash",
    "busybox",
    "nu",
    "pwsh",
    "powershell",
    "cmd",
];

/// Infrastructure and data CLIs, by program name, with what they reach.
pub const INFRA_CLIS: &[(&str, &str)] = &[
    ("kubectl", "Kubernetes clusters"),
    ("helm", "Kubernetes clusters"),
    ("k9s", "Kubernetes clusters"),
    ("oc", "OpenShift clusters"),
    ("terraform", "cloud infrastructure"),
    ("tofu", "cloud infrastructure"),
    ("pulumi", "cloud infrastructure"),
    ("ansible", "fleets of machines"),
    ("ansible-playbook", "fleets of machines"),
    ("aws", "an AWS account"),
    ("gcloud", "a Google Cloud project"),
    ("gsutil", "Google Cloud storage"),
    ("bq", "BigQuery"),
    ("az", "an Azure subscription"),
    ("doctl", "a DigitalOcean account"),
    ("flyctl", "a Fly.io account"),
    ("vercel", "a Vercel account"),
    ("docker", "containers"),
    ("podman", "containers"),
    ("ssh", "remote machines"),
    ("scp", "remote machines"),
    ("rsync", "remote machines"),
    ("psql", "PostgreSQL databases"),
    ("pg_dump", "PostgreSQL databases"),
    ("mysql", "MySQL databases"),
    ("mysqldump", "MySQL databases"),
    ("mariadb", "MariaDB databases"),
    ("mongosh", "MongoDB databases"),
    ("mongo", "MongoDB databases"),
    ("redis-cli", "Redis"),
    ("sqlcmd", "SQL Server databases"),
    ("snowsql", "Snowflake"),
    ("vault", "HashiCorp Vault secrets"),
];

/// Launchers that start MCP servers from a package name (`npx -y @modelcontextprotocol/...`).
pub const MCP_LAUNCHERS: &[&str] = &["npx", "uvx", "pipx", "bunx", "pnpx", "docker", "podman"];

/// Fragments of process rule ids that are apps, IDEs or language servers, not agents.
const NOT_AGENT_RULES: &[&str] = &["app", "desktop", "ide", "language-server", "extension"];

/// Most cached agent verdicts and reported processes kept.
const MAX_REMEMBERED: usize = 65_536;

/// The kind of a lineage detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineageKind {
    /// An agent started a shell.
    Shell,
    /// An agent ran an infrastructure or data CLI, or a destructive command.
    InfraCli,
    /// An agent started an MCP server.
    McpServer,
}

impl LineageKind {
    /// The risk flag, also the rule's kind: `agent_shell`, `agent_infra_cli`,
    /// `agent_mcp_server`.
    pub fn risk(self) -> &'static str {
        match self {
            LineageKind::Shell => "agent_shell",
            LineageKind::InfraCli => "agent_infra_cli",
            LineageKind::McpServer => "agent_mcp_server",
        }
    }
}

/// One process, as any source (events or polling) sees it.
#[derive(Debug, Clone, Copy)]
pub struct ProcView<'a> {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Start time, seconds since the epoch.
    pub start_time_s: u64,
    /// Process name.
    pub name: &'a str,
    /// Executable path (`""` when unreadable).
    pub exe: &'a str,
    /// Arguments.
    pub args: &'a [String],
    /// User name (`""` when unknown).
    pub user: &'a str,
    /// Numeric user id.
    pub uid: Option<u32>,
}

/// The file name of a path, lowercased, without `.exe`.
fn base(path: &str) -> String {
    path.rsplit(['/', '\\'])
        .next()
        .unwrap_or(path)
        .trim_end_matches(".exe")
        .to_ascii_lowercase()
}

/// Interpreters that run a script named by their first argument (`sh ./kubectl`).
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "python", "python3", "node", "perl", "ruby",
];

/// The names a process goes by, most telling first: argv\[0\], the OS name (`comm`: for a
/// script, the script's name), the script an interpreter runs, the executable.
fn program_names(process: &ProcView<'_>) -> Vec<String> {
    let mut names = Vec::with_capacity(4);
    if let Some(arg0) = process.args.first().filter(|a| !a.is_empty()) {
        names.push(base(arg0));
    }
    if !process.name.is_empty() {
        names.push(base(process.name));
    }
    if let (Some(first), Some(script)) = (names.first(), process.args.get(1))
        && INTERPRETERS.contains(&first.as_str())
        && !script.starts_with('-')
    {
        names.push(base(script));
    }
    if !process.exe.is_empty() {
        names.push(base(process.exe));
    }
    names.dedup();
    names
}

/// What a process an agent started is, when it is worth reporting: the kind, a short rule
/// name and what it reaches.
pub fn classify(
    catalog: &Catalog,
    process: &ProcView<'_>,
) -> Option<(LineageKind, String, String)> {
    let names = program_names(process);
    // A catalog MCP server first: `npx -y @modelcontextprotocol/server-github`.
    let facts = ProcessFacts {
        name: process.name,
        exe: process.exe,
        args: process.args,
    };
    if let Some(found) = catalog.match_process(&facts)
        && found.product.category == Category::McpServer
    {
        return Some((
            LineageKind::McpServer,
            found.product.id.clone(),
            format!("the MCP server {}", found.product.name),
        ));
    }
    for name in &names {
        if !MCP_LAUNCHERS.contains(&name.as_str()) {
            continue;
        }
        // The package: the first word after the launcher that is not an option.
        let after = process
            .args
            .iter()
            .position(|arg| base(arg) == *name)
            .map_or(1, |at| at + 1);
        if let Some(package) = process
            .args
            .iter()
            .skip(after)
            .find(|arg| !arg.starts_with('-') && names_mcp(arg))
        {
            let package = crate::redact::cap(package, 128).0;
            return Some((
                LineageKind::McpServer,
                name.clone(),
                format!("an MCP server (`{name} … {package}`)"),
            ));
        }
    }
    for name in &names {
        if let Some((cli, reach)) = INFRA_CLIS.iter().find(|(cli, _)| cli == name) {
            return Some((
                LineageKind::InfraCli,
                (*cli).to_owned(),
                (*reach).to_owned(),
            ));
        }
    }
    if names.iter().any(|n| n == "rm") && is_recursive_rm_on_absolute_path(process.args) {
        return Some((
            LineageKind::InfraCli,
            "rm-recursive".to_owned(),
            "recursive deletion of an absolute path".to_owned(),
        ));
    }
    if names.iter().any(|n| n == "git") && is_force_push(process.args) {
        return Some((
            LineageKind::InfraCli,
            "git-push-force".to_owned(),
            "a force push that rewrites a remote branch".to_owned(),
        ));
    }
    // A shell only when it is one by argv[0] or name (not a script a shell runs).
    if let Some(shell) = names.iter().take(2).find(|n| SHELLS.contains(&n.as_str())) {
        return Some((LineageKind::Shell, shell.clone(), "a shell".to_owned()));
    }
    None
}

/// Whether a package or image name says MCP (`mcp-server-x`, `@modelcontextprotocol/...`).
fn names_mcp(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    lower.contains("mcp") || lower.contains("modelcontextprotocol")
}

fn is_recursive_rm_on_absolute_path(args: &[String]) -> bool {
    let mut recursive = false;
    let mut absolute = false;
    let mut options_done = false;
    for arg in args.iter().skip(1) {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && arg.starts_with("--") {
            recursive |= arg == "--recursive";
        } else if !options_done && arg.starts_with('-') && arg.len() > 1 {
            recursive |= arg.contains('r') || arg.contains('R');
        } else {
            absolute |= arg.starts_with('/') || arg.starts_with('~');
        }
    }
    recursive && absolute
}

fn is_force_push(args: &[String]) -> bool {
    // The subcommand: the first word after git's own options (`-C DIR` and `-c K=V` take one).
    let mut words = args.iter().skip(1);
    let subcommand = loop {
        match words.next().map(String::as_str) {
            Some("-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace") => {
                words.next();
            }
            Some(option) if option.starts_with('-') => {}
            other => break other,
        }
    };
    if subcommand != Some("push") {
        return false;
    }
    args.iter().any(|arg| {
        arg == "--force"
            || arg == "-f"
            || arg.starts_with("--force-with-lease")
            || arg == "--mirror"
            || (arg.starts_with('+') && arg.len() > 1)
    })
}

/// An agent an ancestor turned out to be.
#[derive(Debug, Clone)]
struct Agent {
    product: String,
    vendor: String,
    category: String,
    name: String,
    rule: String,
}

/// Remembers which processes are agents and which lineage detections were made, so that the
/// event source and polling never report the same thing twice.
#[derive(Debug, Default)]
pub struct Lineage {
    agents: HashMap<(u32, u64), Option<Agent>>,
    reported: HashSet<(u32, u64, LineageKind, String)>,
}

impl Lineage {
    /// Nothing known yet.
    pub fn new() -> Lineage {
        Lineage::default()
    }

    /// Forgets everything (a new catalog may change which processes are agents).
    pub fn clear(&mut self) {
        self.agents.clear();
    }

    /// Forgets processes that are no longer running.
    pub fn retain_live(&mut self, live: &HashSet<(u32, u64)>) {
        self.agents.retain(|key, _| live.contains(key));
        self.reported
            .retain(|(pid, start, _, _)| live.contains(&(*pid, *start)));
    }

    fn agent_of(&mut self, catalog: &Catalog, process: &ProcView<'_>) -> Option<Agent> {
        let key = (process.pid, process.start_time_s);
        if let Some(known) = self.agents.get(&key) {
            return known.clone();
        }
        let facts = ProcessFacts {
            name: process.name,
            exe: process.exe,
            args: process.args,
        };
        let agent = catalog.match_process(&facts).and_then(|found| {
            let is_agent_category = matches!(
                found.product.category,
                Category::CodingAssistant | Category::AutonomousAgent | Category::AgentFramework
            );
            let short = found.rule.rsplit('/').next().unwrap_or(found.rule);
            let is_app = NOT_AGENT_RULES.iter().any(|part| short.contains(part));
            (is_agent_category && !is_app).then(|| Agent {
                product: found.product.id.clone(),
                vendor: found.product.vendor.clone(),
                category: found.product.category.as_str().to_owned(),
                name: found.product.name.clone(),
                rule: found.rule.to_owned(),
            })
        });
        if self.agents.len() >= MAX_REMEMBERED {
            self.agents.clear();
        }
        self.agents.insert(key, agent.clone());
        agent
    }

    /// A lineage detection for `process` when one of its `ancestors` (nearest first) is an AI
    /// agent and the process is a shell, an infrastructure CLI or an MCP server; `None` when
    /// not, or when it was reported already.
    pub fn check(
        &mut self,
        catalog: &Catalog,
        process: &ProcView<'_>,
        ancestors: &[ProcView<'_>],
        now_ms: i64,
    ) -> Option<Detection> {
        let (kind, what, reach) = classify(catalog, process)?;
        // An agent under an agent (Claude Code starting `codex`) is the agent's own report.
        let agent_at = ancestors
            .iter()
            .position(|ancestor| self.agent_of(catalog, ancestor).is_some())?;
        let agent_view = ancestors.get(agent_at)?;
        let agent = self.agent_of(catalog, agent_view)?;
        let key = (process.pid, process.start_time_s, kind, what.clone());
        if self.reported.contains(&key) {
            return None;
        }
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.clear();
        }
        self.reported.insert(key);

        let chain: Vec<Ancestor> = ancestors
            .iter()
            .take(agent_at + 1)
            .map(|ancestor| Ancestor::new(ancestor.pid, ancestor.name, ancestor.exe))
            .collect();
        let through: Vec<&str> = ancestors
            .iter()
            .take(agent_at)
            .rev()
            .map(|ancestor| ancestor.name)
            .collect();
        let route = if through.is_empty() {
            String::new()
        } else {
            format!(" through `{}`", through.join("` → `"))
        };
        let started_at_ms =
            i64::try_from(process.start_time_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let process_ref = ProcessRef::from_raw(&RawProcess {
            pid: process.pid,
            parent_pid: process.ppid,
            started_at_ms,
            name: process.name,
            exe: process.exe,
            args: process.args,
            user: process.user,
            uid: process.uid,
        })
        .with_ancestors(chain);
        let risk = kind.risk();
        let reason = format!(
            "{} (pid {}, rule {}) started {}{route}: `{}`, {reach}",
            agent.name,
            agent_view.pid,
            agent.rule,
            match kind {
                LineageKind::Shell => "a shell",
                LineageKind::InfraCli => "an infrastructure or data command",
                LineageKind::McpServer => "an MCP server",
            },
            crate::redact::cap(&what, 64).0,
        );
        Some(Detection {
            id: uuid::Uuid::now_v7(),
            ts_ms: now_ms,
            signal: Signal::Process,
            name: process_ref.name.clone(),
            product: agent.product,
            vendor: agent.vendor,
            category: agent.category,
            risk: vec![risk.to_owned()],
            confidence: "high".to_owned(),
            rule: format!("agent/lineage#{risk}/{what}"),
            reason,
            plan: None,
            tenant: None,
            catalog_version: catalog.version().to_owned(),
            count: 1,
            process: Some(process_ref),
            src: None,
            dst: None,
            evidence: Evidence::Process {
                event: ProcessEventKind::SpawnedByAgent,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lineage_risk_is_in_the_catalog_vocabulary() {
        for kind in [
            LineageKind::Shell,
            LineageKind::InfraCli,
            LineageKind::McpServer,
        ] {
            assert!(
                shadowai_catalog::is_known_risk(kind.risk()),
                "{}",
                kind.risk()
            );
        }
        for risk in [
            "mcp_unknown_server",
            "mcp_remote",
            "mcp_auto_trust",
            "network_exposed",
        ] {
            assert!(shadowai_catalog::is_known_risk(risk), "{risk}");
        }
    }

    fn view<'a>(
        pid: u32,
        ppid: u32,
        name: &'a str,
        exe: &'a str,
        args: &'a [String],
    ) -> ProcView<'a> {
        ProcView {
            pid,
            ppid,
            start_time_s: 1000 + u64::from(pid),
            name,
            exe,
            args,
            user: "alice",
            uid: Some(1000),
        }
    }

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn shells_clis_and_mcp_servers_under_an_agent_are_distinct_detections() {
        let catalog = Catalog::embedded().unwrap();
        let mut lineage = Lineage::new();
        let agent_args = args("node /home/a/node_modules/@anthropic-ai/claude-code/cli.js");
        let agent = view(100, 1, "node", "/usr/bin/node", &agent_args);
        let sh_args = args("sh -c kubectl");
        let sh = view(200, 100, "sh", "/usr/bin/dash", &sh_args);
        let kubectl_args = args("kubectl get pods");
        let kubectl = view(300, 200, "kubectl", "/tmp/bin/kubectl", &kubectl_args);
        let mcp_args = args("npx -y @modelcontextprotocol/server-filesystem /tmp");
        let mcp = view(400, 100, "npm exec @model", "/usr/bin/node", &mcp_args);

        let shell = lineage.check(&catalog, &sh, &[agent], 1).unwrap();
        assert_eq!(shell.risk, ["agent_shell"]);
        assert_eq!(shell.rule, "agent/lineage#agent_shell/sh");
        assert_eq!(shell.product, "anthropic.claude-code");
        let infra = lineage.check(&catalog, &kubectl, &[sh, agent], 1).unwrap();
        assert_eq!(infra.risk, ["agent_infra_cli"]);
        assert_eq!(infra.rule, "agent/lineage#agent_infra_cli/kubectl");
        let chain: Vec<u32> = infra
            .process
            .as_ref()
            .unwrap()
            .ancestors
            .iter()
            .map(|a| a.pid)
            .collect();
        assert_eq!(chain, [200, 100]);
        assert!(infra.reason.contains("through `sh`"), "{}", infra.reason);
        assert_eq!(
            infra.evidence,
            Evidence::Process {
                event: ProcessEventKind::SpawnedByAgent
            }
        );
        let server = lineage.check(&catalog, &mcp, &[agent], 1).unwrap();
        assert_eq!(server.risk, ["agent_mcp_server"]);
        // Reported once.
        assert!(lineage.check(&catalog, &kubectl, &[sh, agent], 2).is_none());
    }

    #[test]
    fn processes_without_an_agent_ancestor_are_not_reported() {
        let catalog = Catalog::embedded().unwrap();
        let mut lineage = Lineage::new();
        let term_args = args("gnome-terminal");
        let term = view(
            10,
            1,
            "gnome-terminal",
            "/usr/bin/gnome-terminal",
            &term_args,
        );
        let sh_args = args("bash");
        let sh = view(11, 10, "bash", "/usr/bin/bash", &sh_args);
        let kubectl_args = args("kubectl get pods");
        let kubectl = view(12, 11, "kubectl", "/usr/bin/kubectl", &kubectl_args);
        assert!(lineage.check(&catalog, &sh, &[term], 1).is_none());
        assert!(lineage.check(&catalog, &kubectl, &[sh, term], 1).is_none());
        // And benign children of an agent are not reported either.
        let agent_args = args("codex");
        let agent = view(20, 1, "codex", "/usr/bin/codex", &agent_args);
        let ls_args = args("ls -la");
        let ls = view(21, 20, "ls", "/usr/bin/ls", &ls_args);
        assert!(lineage.check(&catalog, &ls, &[agent], 1).is_none());
    }

    #[test]
    fn destructive_commands_are_recognised() {
        assert!(is_recursive_rm_on_absolute_path(&args("rm -rf /srv/data")));
        assert!(is_recursive_rm_on_absolute_path(&args(
            "rm --recursive -- /x"
        )));
        assert!(!is_recursive_rm_on_absolute_path(&args("rm -rf build")));
        assert!(!is_recursive_rm_on_absolute_path(&args("rm /tmp/file")));
        assert!(is_force_push(&args("git push --force origin main")));
        assert!(is_force_push(&args("git -C /r push -f")));
        assert!(is_force_push(&args("git push origin +main")));
        assert!(!is_force_push(&args("git push origin main")));
        assert!(!is_force_push(&args("git commit -f")));
    }
}
