"""Validates the deployment definitions without Docker, Helm or a cluster:

- the Helm chart, rendered by helm_template.py (default values and variants), every object checked
  against the Kubernetes OpenAPI schemas (kubernetes-validate) and for what the issue requires:
  N replicas, Service, PostgreSQL URL from a Secret, TLS secrets, probes on /healthz and /readyz,
  a PodDisruptionBudget that selects the Deployment's pods, a non-root read-only container;
- every shipped collector configuration (Linux package, compose, rendered chart) loaded by the real
  collector binary when one is given (--collector BIN): unknown keys are errors there;
- docker-compose.yml: services, files it mounts, Prometheus scraping the collector with the metrics
  token, Grafana provisioning the dashboards; `docker compose config` too where that client exists;
- the Dockerfile: multi-stage, builds with `cargo build --release --locked --bins`, runs non-root;
- the Grafana dashboards: valid JSON, unique uids, the provisioned Prometheus datasource.

Which metric names the dashboards query is checked against a running collector by the Rust
end-to-end test `observability`.

    python3 deploy/tests/validate.py [--collector target/debug/shadowai-collector]

Prints one line per check and `N passed, N failed`; exits non-zero on any failure.
"""

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import helm_template  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/shadowai-collector"
KUBERNETES_VERSION = "1.30"

passed = 0
failed = 0


def check(description, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok: {description}")
    else:
        failed += 1
        print(f"FAIL: {description} {detail}".rstrip(), file=sys.stderr)


def render(values=None):
    rendered = helm_template.render_chart(CHART, values)
    objects = {}
    for name, text in rendered.items():
        for document in yaml.safe_load_all(text):
            if document:
                objects[document["kind"]] = document
    return rendered, objects


def schema_errors(document):
    import kubernetes_validate

    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error).split("\n")[0]
    except Exception as error:  # noqa: BLE001 - report whatever the validator says
        return f"{type(error).__name__}: {error}"
    return None


def check_chart(collector):
    for variant, values in [
        ("defaults", None),
        ("3 replicas, dashboard TLS off", {"replicaCount": 3, "dashboardTls": {"enabled": False},
                                            "nodeSelector": {"pool": "security"},
                                            "podAnnotations": {"team": "secops"}}),
    ]:
        rendered, objects = render(values)
        wanted = {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
        check(f"chart [{variant}] renders {sorted(wanted)}", wanted <= set(objects), sorted(objects))
        for kind, document in sorted(objects.items()):
            errors = schema_errors(document)
            check(f"chart [{variant}] {kind} matches the Kubernetes {KUBERNETES_VERSION} schema",
                  errors is None, errors or "")
        deployment = objects["Deployment"]
        spec = deployment["spec"]
        replicas = (values or {}).get("replicaCount", 2)
        tls = ((values or {}).get("dashboardTls") or {}).get("enabled", True)
        check(f"chart [{variant}] {replicas} replicas", spec["replicas"] == replicas)
        pod_labels = spec["template"]["metadata"]["labels"]
        check(f"chart [{variant}] selector matches the pods",
              spec["selector"]["matchLabels"].items() <= pod_labels.items())
        pod = spec["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "collector")
        env = {e["name"]: e for e in container.get("env", [])}
        secret_ref = env.get("SHADOWAI_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        check(f"chart [{variant}] PostgreSQL URL from a Secret", bool(secret_ref and secret_ref["name"]))
        scheme = "HTTPS" if tls else "HTTP"
        for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
            get = container.get(probe, {}).get("httpGet", {})
            check(f"chart [{variant}] {probe} on {path} over {scheme}",
                  get.get("path") == path and get.get("port") == "http" and get.get("scheme") == scheme,
                  str(get))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        check(f"chart [{variant}] container ports grpc 7443, http 8080",
              ports == {"grpc": 7443, "http": 8080}, str(ports))
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        check(f"chart [{variant}] CA and metrics token from Secrets",
              {"ca", "metrics-token"} <= set(secrets), str(secrets))
        check(f"chart [{variant}] dashboard TLS secret mounted iff TLS",
              ("dashboard-tls" in secrets) == tls, str(secrets))
        security = container["securityContext"]
        check(f"chart [{variant}] container non-root, read-only, no capabilities",
              pod["securityContext"].get("runAsNonRoot") is True
              and security.get("readOnlyRootFilesystem") is True
              and security.get("allowPrivilegeEscalation") is False
              and security.get("capabilities", {}).get("drop") == ["ALL"])
        service = objects["Service"]
        check(f"chart [{variant}] Service selects the pods",
              service["spec"]["selector"].items() <= pod_labels.items())
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        check(f"chart [{variant}] Service targets named container ports", targets <= set(ports), str(targets))
        pdb = objects["PodDisruptionBudget"]
        check(f"chart [{variant}] PodDisruptionBudget selects the pods and keeps one",
              pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
              and pdb["spec"].get("minAvailable", 0) >= 1)
        config_text = objects["ConfigMap"]["data"]["collector.toml"]
        config = tomllib.loads(config_text)
        check(f"chart [{variant}] collector.toml has [http] TLS iff TLS", ("http" in config) == tls)
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        if tls:
            check(f"chart [{variant}] TLS files are where the config says",
                  pathlib.PurePath(config["http"]["tls_cert"]).parent.as_posix() in mounts)
        check(f"chart [{variant}] metrics token file is mounted",
              pathlib.PurePath(config["metrics"]["token_file"]).parent.as_posix() in mounts)
        check_config_with_collector(collector, f"chart [{variant}] collector.toml", config_text)


def check_config_with_collector(collector, description, text):
    if collector is None:
        print(f"skipped: {description} loaded by the collector (no --collector)")
        return
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "collector.toml"
        path.write_text(text)
        result = subprocess.run(
            [collector, "catalog", "show", "--config", str(path), "--data-dir",
             f"{directory}/data", "--database", f"sqlite://{directory}/check.db"],
            capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "SHADOWAI_LOG": "warn"},
        )
        check(f"{description} is accepted by the real collector", result.returncode == 0,
              result.stderr.strip())


def check_compose(collector):
    directory = ROOT / "deploy/compose"
    compose = yaml.safe_load((directory / "docker-compose.yml").read_text())
    services = compose["services"]
    check("compose has postgres, collector, prometheus, grafana",
          {"postgres", "collector", "prometheus", "grafana"} <= set(services), sorted(services))
    build = services["collector"]["build"]
    dockerfile = (directory / build["context"] / build["dockerfile"]).resolve()
    check("compose builds the collector from deploy/docker/Dockerfile", dockerfile.is_file(), str(dockerfile))
    for name, config in compose.get("configs", {}).items():
        check(f"compose config {name} exists", (directory / config["file"]).is_file(), config["file"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                check(f"compose {name} mounts an existing {source}", (directory / source).exists())
    check("compose waits for a healthy PostgreSQL",
          services["collector"]["depends_on"]["postgres"]["condition"] == "service_healthy")
    prometheus = yaml.safe_load((directory / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    token_target = next(s["target"] for s in services["prometheus"]["secrets"] if s["source"] == "metrics_token")
    check("prometheus scrapes collector:8080/metrics with the metrics token",
          job["static_configs"][0]["targets"] == ["collector:8080"] and job["metrics_path"] == "/metrics"
          and job["authorization"]["credentials_file"] == token_target)
    collector_config = (directory / "collector.toml").read_text()
    parsed = tomllib.loads(collector_config)
    check("compose collector reads the metrics token secret",
          parsed["metrics"]["token_file"] == "/run/secrets/metrics_token")
    check_config_with_collector(collector, "compose collector.toml", collector_config)
    provider = yaml.safe_load((directory / "grafana/provisioning/dashboards/shadowai.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2][::-1] for v in services["grafana"]["volumes"])
    check("grafana provisions the dashboards directory of the repository",
          (directory / mounts.get(dashboards_path, "/nonexistent")).resolve() == ROOT / "dashboards/grafana")
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        secrets = directory / "secrets"
        made = []
        for name in ("metrics-token", "postgres-password"):
            if not (secrets / name).exists():
                (secrets / name).write_text("x" * 64)
                made.append(secrets / name)
        result = subprocess.run([docker, "compose", "config", "--quiet"], cwd=directory,
                                capture_output=True, text=True)
        for path in made:
            path.unlink()
        check("docker compose config", result.returncode == 0, result.stderr)
    else:
        print("skipped: docker compose config (no docker compose client on this machine)")


def check_dockerfile():
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    check("Dockerfile is multi-stage", len(stages) >= 2, str(stages))
    check("Dockerfile builds with `cargo build --release --locked --bins`",
          re.search(r"^RUN cargo build --release --locked --bins\b", text, re.M) is not None)
    final = text[text.rindex("\nFROM "):]
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    check("Dockerfile runs as a non-root user",
          bool(user) and user[-1].split(":")[0] not in ("0", "root"), str(user))
    check("Dockerfile final stage is Debian slim or distroless",
          re.search(r"FROM (debian:\S*slim|gcr.io/distroless/)", final) is not None)
    check("Dockerfile copies the binaries from the build stage", "COPY --from=build" in final)


def check_linux_configs(collector):
    check_config_with_collector(collector, "deploy/linux/collector.toml",
                                (ROOT / "deploy/linux/collector.toml").read_text())


def check_untested_platforms():
    """macOS and Windows files cannot be built here; they must at least be well-formed."""
    import plistlib
    import xml.etree.ElementTree as ElementTree

    for path in sorted((ROOT / "deploy/macos").glob("*.*config")) + sorted((ROOT / "deploy/macos").glob("*.plist")):
        with open(path, "rb") as handle:
            document = plistlib.load(handle)
        check(f"{path.name} is a valid property list", isinstance(document, dict))
    daemon = plistlib.loads((ROOT / "deploy/macos/com.shadowai.agent.plist").read_bytes())
    check("LaunchDaemon runs `shadowai-agent run --config` while the config exists",
          daemon["ProgramArguments"][1:3] == ["run", "--config"] and "PathState" in daemon["KeepAlive"])
    pppc = plistlib.loads((ROOT / "deploy/macos/shadowai-agent-pppc.mobileconfig").read_bytes())
    services = pppc["PayloadContent"][0]["Services"]
    check("PPPC grants only Full Disk Access", list(services) == ["SystemPolicyAllFiles"])
    root = ElementTree.parse(ROOT / "deploy/windows/shadowai-agent.wxs").getroot()
    check("WiX definition is well-formed WiX v4", root.tag == "{http://wixtoolset.org/schemas/v4/wxs}Wix")


def check_grafana():
    datasource = yaml.safe_load(
        (ROOT / "deploy/compose/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    uids = set()
    for path in sorted((ROOT / "dashboards/grafana").glob("*.json")):
        dashboard = json.loads(path.read_text())
        check(f"{path.name} has a unique uid", dashboard["uid"] not in uids)
        uids.add(dashboard["uid"])
        panels = dashboard["panels"]
        check(f"{path.name} panels all query the provisioned datasource",
              all(p["datasource"]["uid"] == uid and p["targets"] for p in panels))
        check(f"{path.name} panels do not overlap", not overlapping(panels))


def overlapping(panels):
    cells = set()
    for panel in panels:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells or x >= 24:
                    return True
                cells.add((x, y))
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collector", help="a shadowai-collector binary to load the shipped configs with")
    args = parser.parse_args()
    collector = str(pathlib.Path(args.collector).resolve()) if args.collector else None
    check_chart(collector)
    check_compose(collector)
    check_dockerfile()
    check_linux_configs(collector)
    check_grafana()
    check_untested_platforms()
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
