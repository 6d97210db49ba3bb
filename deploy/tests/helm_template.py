"""A small renderer for the subset of Helm's Go templates that deploy/helm uses.

No `helm` binary can be installed here from a package registry, so the chart is rendered by this
file and the result is validated (deploy/tests/validate.py). It implements exactly what the chart
uses and fails loudly on anything else, so a template that strays from the subset cannot pass
unnoticed:

- actions `{{ ... }}` with `{{-` / `-}}` whitespace trimming, comments `{{/* ... */}}`;
- `define NAME` / `include NAME ARG`, `if` / `else` / `end`, `with` / `end`;
- values `.`, `.Values.a.b`, `.Release.Name|Namespace|Service`, `.Chart.Name|Version|AppVersion`,
  string and integer literals;
- functions `quote`, `toYaml`, `toJson`, `nindent N`, `indent N`, `printf`, `trunc N`,
  `trimSuffix S`, `not`; pipelines `a | f x` pass `a` as the last argument, as Go templates do.

Go template truthiness: false, 0, "", nil and empty collections are false.
"""

import json
import re
import shlex

import yaml

ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)


class TemplateError(Exception):
    pass


def tokenize(text):
    """Text and action tokens, with Helm's whitespace trimming applied."""
    tokens = []
    position = 0
    for match in ACTION.finditer(text):
        literal = text[position:match.start()]
        if match.group(1) == "-":
            literal = literal.rstrip(" \t\r\n")
        tokens.append(("text", literal))
        tokens.append(("action", match.group(2).strip(), match.group(3) == "-"))
        position = match.end()
    tokens.append(("text", text[position:]))
    # `-}}` trims the whitespace after the action
    result = []
    trim_next = False
    for token in tokens:
        if token[0] == "text":
            value = token[1].lstrip(" \t\r\n") if trim_next else token[1]
            result.append(("text", value))
            trim_next = False
        else:
            result.append(("action", token[1]))
            trim_next = token[2]
    return result


def parse(tokens, defines, stop=None):
    """A tree of nodes until one of `stop` (None: the end of the text); returns (nodes, the
    action that stopped it)."""
    nodes = []
    while tokens:
        token = tokens.pop(0)
        if token[0] == "text":
            nodes.append(("text", token[1]))
            continue
        action = token[1]
        if action.startswith("/*"):
            if not action.endswith("*/"):
                raise TemplateError(f"unterminated comment: {action}")
            continue
        word = action.split(None, 1)[0] if action else ""
        if stop and word in stop:
            return nodes, action
        if word == "define":
            name = shlex.split(action)[1]
            body, _ = parse(tokens, defines, stop=("end",))
            defines[name] = body
        elif word in ("if", "with"):
            condition = action[len(word):].strip()
            then, ended = parse(tokens, defines, stop=("end", "else"))
            otherwise = []
            if ended.startswith("else"):
                if ended != "else":
                    raise TemplateError(f"unsupported: {{{{ {ended} }}}}")
                otherwise, _ = parse(tokens, defines, stop=("end",))
            nodes.append((word, condition, then, otherwise))
        elif word in ("range", "template", "block", "else if", "break", "continue"):
            raise TemplateError(f"unsupported action: {{{{ {action} }}}}")
        else:
            nodes.append(("expr", action))
    if stop:
        raise TemplateError("missing {{ end }}")
    return nodes, None


def truthy(value):
    return not (value is None or value is False or value == 0 or value == "" or value == [] or value == {})


def to_yaml(value):
    if value in ({}, [], None):
        return ""
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def indent_text(spaces, text):
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in str(text).split("\n"))


def go_string(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


class Renderer:
    def __init__(self, chart, values, release_name, namespace):
        self.defines = {}
        self.root = {
            "Values": values,
            "Release": {"Name": release_name, "Namespace": namespace, "Service": "Helm"},
            "Chart": {
                "Name": chart["name"],
                "Version": chart["version"],
                "AppVersion": chart.get("appVersion", ""),
            },
        }

    def load(self, text):
        nodes, _ = parse(tokenize(text), self.defines)
        return nodes

    def render(self, nodes, dot):
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "expr":
                out.append(go_string(self.pipeline(node[1], dot)))
            elif kind == "if":
                branch = node[2] if truthy(self.pipeline(node[1], dot)) else node[3]
                out.append(self.render(branch, dot))
            elif kind == "with":
                value = self.pipeline(node[1], dot)
                out.append(self.render(node[2], value) if truthy(value) else self.render(node[3], dot))
        return "".join(out)

    # expressions -----------------------------------------------------------------------------

    def pipeline(self, text, dot):
        stages = split_top(text, "|")
        value = self.command(stages[0], dot, None, piped=False)
        for stage in stages[1:]:
            value = self.command(stage, dot, value, piped=True)
        return value

    def command(self, text, dot, piped_value, piped):
        words = words_of(text)
        if not words:
            raise TemplateError(f"empty command in {text!r}")
        head, args = words[0], words[1:]
        if not is_function(head):
            if args or piped:
                raise TemplateError(f"not a function: {head!r} in {text!r}")
            return self.term(head, dot)
        values = [self.term(arg, dot) for arg in args]
        if piped:
            values.append(piped_value)
        return self.call(head, values)

    def term(self, word, dot):
        if word.startswith("(") and word.endswith(")"):
            return self.pipeline(word[1:-1], dot)
        if word.startswith('"'):
            return json.loads(word)
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word == ".":
            return dot
        if word.startswith("$."):
            return lookup(self.root, word[2:].split("."), word)
        if word.startswith("."):
            return lookup(dot, word[1:].split("."), word)
        raise TemplateError(f"unsupported term {word!r}")

    def call(self, name, args):
        def arity(n):
            if len(args) != n:
                raise TemplateError(f"{name} takes {n} arguments, got {len(args)}")

        if name == "include":
            arity(2)
            if args[0] not in self.defines:
                raise TemplateError(f"no template {args[0]!r}")
            return self.render(self.defines[args[0]], args[1])
        if name == "quote":
            arity(1)
            return json.dumps(go_string(args[0]))
        if name == "toYaml":
            arity(1)
            return to_yaml(args[0])
        if name == "toJson":
            arity(1)
            return json.dumps(args[0])
        if name == "nindent":
            arity(2)
            return "\n" + indent_text(args[0], args[1])
        if name == "indent":
            arity(2)
            return indent_text(args[0], args[1])
        if name == "printf":
            return args[0] % tuple(go_string(a) for a in args[1:])
        if name == "trunc":
            arity(2)
            return go_string(args[1])[: args[0]]
        if name == "trimSuffix":
            arity(2)
            text = go_string(args[1])
            return text[: -len(args[0])] if args[0] and text.endswith(args[0]) else text
        if name == "not":
            arity(1)
            return not truthy(args[0])
        raise TemplateError(f"unsupported function {name!r}")


FUNCTIONS = {"include", "quote", "toYaml", "toJson", "nindent", "indent", "printf", "trunc",
             "trimSuffix", "not"}


def is_function(word):
    if word in FUNCTIONS:
        return True
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", word) and word not in ("true", "false"):
        raise TemplateError(f"unsupported function {word!r}")
    return False


def lookup(value, path, word):
    for key in path:
        if key == "":
            continue
        if not isinstance(value, dict) or key not in value:
            raise TemplateError(f"{word}: no key {key!r}")
        value = value[key]
    return value


def split_top(text, separator):
    """Splits on `separator` outside quotes and parentheses."""
    parts, depth, quoted, current = [], 0, False, []
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and not quoted and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def words_of(text):
    """Words of a command: quoted strings and parenthesised groups stay whole."""
    words = [w for w in split_top(text, " ") if w]
    return words


def render_chart(chart_dir, values_override=None, release_name="shadowai", namespace="shadowai"):
    """Renders every template of the chart; returns {template file name: rendered text}."""
    import pathlib

    chart_dir = pathlib.Path(chart_dir)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    merge(values, values_override or {})
    renderer = Renderer(chart, values, release_name, namespace)
    templates = sorted((chart_dir / "templates").iterdir())
    parsed = {}
    for path in templates:
        if path.name.startswith("_"):
            renderer.load(path.read_text())
    for path in templates:
        if path.suffix in (".yaml", ".yml") and not path.name.startswith("_"):
            parsed[path.name] = renderer.load(path.read_text())
    return {name: renderer.render(nodes, renderer.root) for name, nodes in parsed.items()}


def merge(base, override):
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
