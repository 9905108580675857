#!/usr/bin/env python3
"""Validate a JSON task definition against ECS RegisterTaskDefinition's INPUT shape (botocore's model).

    validate_register_input.py FILE.json [--render registry=H:P,account_id=N,region=R] [--from-describe]

- The JSON keys are used as they are: ECS is an awsJson1_1 service whose member names on the wire
  (camelCase: containerDefinitions, versionConsistency, ...) are exactly boto3's parameter names, so no
  key conversion is needed (unlike the query/XML services, e.g. EC2 and IAM, whose boto3 names are
  PascalCase).
- Checks, in order, each reported as one line "<kind>: <path>: <message>":
    placeholder  a `{registry}`/`{account_id}`/`{region}` left in a string (use --render to fill them)
    botocore     botocore.validate.ParamValidator against operation_model.input_shape: unknown members,
                 missing required members, wrong JSON types, and the model's `min` constraints (length of
                 strings and lists, lower bound of numbers) -- what boto3 itself checks before sending
    enum         a string member whose shape has an enum (networkMode, versionConsistency,
                 dependsOn[].condition, logDriver, ...) holding a value not in the enum; botocore does not
                 check enums, ECS refuses them (ClientException)
    rule         a few ECS rules the model cannot express: every container has a name and an image, names
                 are unique, dependsOn/volumesFrom name existing containers (not checked: Fargate cpu/memory
                 pairs, patterns, max lengths -- the model's max/pattern traits are not enforced by botocore)
- --from-describe drops the members DescribeTaskDefinition returns but RegisterTaskDefinition does not
  accept (taskDefinitionArn, revision, status, requiresAttributes, compatibilities, registeredAt,
  registeredBy, deregisteredAt, deleteRequestedAt), so `describe-task-definition` output can be checked too.
Exit status: 0 valid, 1 invalid, 2 usage or unreadable file.
"""

import argparse
import json
import sys

import botocore.session
from botocore.validate import ParamValidator

DESCRIBE_ONLY = ["taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
                 "registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt"]
PLACEHOLDERS = ["{registry}", "{account_id}", "{region}"]


def render(text, assignments):
    for item in filter(None, (assignments or "").split(",")):
        key, _, value = item.partition("=")
        text = text.replace("{" + key.strip() + "}", value.strip())
    return text


def strings(value, path="$"):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def enum_errors(value, shape, path="$"):
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                yield from enum_errors(item, shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from enum_errors(item, shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from enum_errors(item, shape.value, f"{path}[{key!r}]")
    elif kind == "string" and isinstance(value, str) and shape.enum and value not in shape.enum:
        yield f"{path}: {value!r} is not one of {shape.name} ({', '.join(shape.enum)})"


def validate(params):
    """Every problem found, as "<kind>: <message>" lines (empty when valid)."""
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    problems = []
    for path, text in strings(params):
        for p in PLACEHOLDERS:
            if p in text:
                problems.append(f"placeholder: {path}: `{p}` is not replaced")
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        # generate_report() is one line per error (ParamValidationError adds the header boto3 prints).
        problems += ["botocore: " + line for line in report.generate_report().splitlines()]
    problems += ["enum: " + e for e in enum_errors(params, shape)]
    problems += ["rule: " + e for e in rule_errors(params)]
    return problems


def rule_errors(params):
    """ECS-side rules the model does not encode (ContainerDefinition has no required members in it)."""
    containers = params.get("containerDefinitions")
    if not isinstance(containers, list):
        return
    names = [c.get("name") for c in containers if isinstance(c, dict)]
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            continue
        for key in ("name", "image"):
            if not c.get(key):
                yield f"$.containerDefinitions[{i}].{key}: required by ECS (the model does not mark it)"
        if c.get("name") and names.count(c["name"]) > 1:
            yield f"$.containerDefinitions[{i}].name: `{c['name']}` is used by more than one container"
        for j, dep in enumerate(c.get("dependsOn") or []):
            if isinstance(dep, dict) and dep.get("containerName") not in names:
                yield f"$.containerDefinitions[{i}].dependsOn[{j}].containerName: no container `{dep.get('containerName')}`"
        for j, src in enumerate(c.get("volumesFrom") or []):
            if isinstance(src, dict) and src.get("sourceContainer") not in names:
                yield f"$.containerDefinitions[{i}].volumesFrom[{j}].sourceContainer: no container `{src.get('sourceContainer')}`"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("file")
    parser.add_argument("--render", help="placeholder values, e.g. registry=127.0.0.1:5011,account_id=123456789012,"
                                         "region=ap-northeast-1")
    parser.add_argument("--from-describe", action="store_true",
                        help="drop DescribeTaskDefinition-only members first (also unwraps {'taskDefinition': ...})")
    args = parser.parse_args()
    try:
        with open(args.file) as f:
            params = json.loads(render(f.read(), args.render))
    except (OSError, ValueError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 2
    if not isinstance(params, dict):
        print(f"error: {args.file}: the document must be a JSON object", file=sys.stderr)
        return 2
    if args.from_describe:
        tags = params.get("tags")
        params = params.get("taskDefinition", params)
        if tags and "tags" not in params:
            params = {**params, "tags": tags}
        for key in DESCRIBE_ONLY:
            params.pop(key, None)

    problems = validate(params)
    for line in problems:
        print(line)
    print(f"{args.file}: {'valid' if not problems else f'{len(problems)} problem(s)'} "
          f"(ecs RegisterTaskDefinition input, botocore {botocore.__version__})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
