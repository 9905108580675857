"""Checks each response here against the output shape of its operation in botocore's ECS model
(the AWS CLI's): unknown members, wrong types and enum values not in the model all fail.

    python3 -m venv /tmp/bc && /tmp/bc/bin/pip install botocore
    /tmp/bc/bin/python xtask/test_data/stopped/check_shapes.py xtask/test_data/stopped
"""
import json, sys, glob, datetime
import botocore.session
m = botocore.session.get_session().get_service_model('ecs')
errors = []
def check(value, shape, path):
    t = shape.type_name
    if t == 'structure':
        if not isinstance(value, dict): errors.append(f"{path}: not an object"); return
        for k, v in value.items():
            if k not in shape.members: errors.append(f"{path}.{k}: not a member of {shape.name}"); continue
            check(v, shape.members[k], f"{path}.{k}")
        for r in shape.required_members:
            if r not in value: errors.append(f"{path}: required {r} missing")
    elif t == 'list':
        if not isinstance(value, list): errors.append(f"{path}: not a list"); return
        for i, v in enumerate(value): check(v, shape.member, f"{path}[{i}]")
    elif t == 'map':
        if not isinstance(value, dict): errors.append(f"{path}: not a map"); return
        for k, v in value.items(): check(v, shape.value, f"{path}.{k}")
    elif t == 'string':
        if not isinstance(value, str): errors.append(f"{path}: not a string ({value!r})")
        elif shape.enum and value not in shape.enum: errors.append(f"{path}: {value!r} not in {shape.name} {shape.enum}")
    elif t in ('integer', 'long'):
        if not isinstance(value, int) or isinstance(value, bool): errors.append(f"{path}: not an integer ({value!r})")
    elif t == 'boolean':
        if not isinstance(value, bool): errors.append(f"{path}: not a boolean")
    elif t == 'timestamp':
        if not isinstance(value, (int, float)) or isinstance(value, bool): errors.append(f"{path}: not epoch seconds ({value!r})")
    elif t in ('double', 'float'):
        if not isinstance(value, (int, float)): errors.append(f"{path}: not a number")
    else:
        errors.append(f"{path}: unchecked type {t}")
ops = {'DescribeTasks': 'tasks', 'DescribeServices': 'services', 'DescribeTaskDefinition': 'taskDefinition'}
for f in sorted(glob.glob(sys.argv[1] + '/*.json')):
    doc = json.load(open(f))
    op = next(o for o, key in ops.items() if key in doc)
    check(doc, m.operation_model(op).output_shape, f.rsplit('/', 1)[1])
    print(f"{f.rsplit('/',1)[1]}: {op}Response")
print("\n".join(errors) or "all valid")
sys.exit(1 if errors else 0)
