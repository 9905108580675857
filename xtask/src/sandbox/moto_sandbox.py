"""moto 5.2 for the zenn-clone sandbox, plus a private admin API for the sandbox scheduler.

Started by `cargo xtask sandbox up` (the xtask writes this file under target/sandbox/ and runs
it with the sandbox's own venv):

    python moto_sandbox.py --port 5010 --region ap-northeast-1 --registry 127.0.0.1:5011

Every request goes to moto's own server (one account, 123456789012), except paths under
`/_sandbox/`, which are the admin API below. moto's classes are patched in place, so the
ECS/ECR/EC2 APIs answer as AWS does where the deploy depends on it:

- ECS tasks stay in the state the scheduler records: moto's transitions for `ecs::task` are
  set to never advance. A new task starts PROVISIONING with desiredStatus RUNNING.
- A task lists every container of its task definition (moto shows only the first), each with
  imageDigest, runtimeId, exitCode, reason, lastStatus and healthStatus (UNKNOWN until set).
- StopTask works as on ECS: desiredStatus STOPPED, stopCode UserInitiated, stoppingAt now;
  lastStatus stays until the scheduler records STOPPED.
- ListTasks filters by serviceName (group `service:NAME`) and lists desiredStatus RUNNING
  unless another desiredStatus is asked for.
- ECS tasks get an ENI in any VPC (moto failed unless the VPC had DNS hostnames enabled).
- RunTask accepts containers without memory/memoryReservation when the task sets memory.
- CreateService keeps deploymentConfiguration (ECS defaults when absent) and starts with no
  running or pending task. runningCount/pendingCount of the service and of each deployment
  are counted from its tasks (lastStatus RUNNING / not yet RUNNING, desiredStatus RUNNING).
- UpdateService with forceNewDeployment=true or a new taskDefinition adds a PRIMARY deployment
  (rolloutState IN_PROGRESS); the previous PRIMARY becomes ACTIVE. A new desiredCount no
  longer pretends the tasks run.
- ECR PutImage moving a tag leaves the previous image in the repository, untagged (moto
  deleted it); a missing repository is RepositoryNotFoundException.
- ECR GetAuthorizationToken answers the sandbox registry (`http://<--registry>`) as
  proxyEndpoint and an expiresAt 12 hours ahead.

Admin API (JSON in and out, on the same host and port as moto)
==============================================================

Every call takes an optional `region` (query parameter or body key; default `--region`).
Errors: status 400 (bad input, or an error moto raised: `"<Code>: <message>"`), 404 (unknown
route, cluster, service, task or deployment), always as `{"error": "<one line>"}`.
Times in responses are ISO 8601 UTC strings (`2025-01-31T12:00:00.123Z`) or null; times in
requests are ISO 8601 strings or epoch seconds.

GET  /_sandbox/health
     -> {"ok": true, "moto": "5.2.1", "region": "...", "registry": "host:port"}

GET  /_sandbox/ecs/tasks?cluster=NAME
     Every task of the cluster (all clusters without `cluster`), stopped ones included.
     -> {"tasks": [Task, ...]}

POST /_sandbox/ecs/tasks
     {"cluster": NAME, "service": NAME, "deploymentId": ID?}
     Starts a task for a service as ECS's service scheduler does: the deployment's
     taskDefinition (default: the PRIMARY deployment), group `service:NAME`, startedBy the
     deployment id, the service's launchType and awsvpc networkConfiguration (an ENI is
     created in its subnet). lastStatus PROVISIONING, desiredStatus RUNNING.
     -> 201 {"task": Task}

POST /_sandbox/ecs/tasks/TASK_ID         (TASK_ID: the last part of the task ARN)
     Records what the scheduler observed. Every key is optional; unknown keys are refused.
       lastStatus      PROVISIONING PENDING ACTIVATING RUNNING DEACTIVATING STOPPING
                       DEPROVISIONING STOPPED
       desiredStatus   RUNNING STOPPED
       healthStatus    HEALTHY UNHEALTHY UNKNOWN
       stoppedReason   text
       stopCode        TaskFailedToStart EssentialContainerExited UserInitiated
                       ServiceSchedulerInitiated SpotInterruption TerminationNotice
       pullStartedAt, pullStoppedAt, startedAt, stoppingAt, stoppedAt   times
       containers      [{"name": NAME (required), "image", "imageDigest", "runtimeId",
                         "lastStatus" (PENDING RUNNING STOPPED), "healthStatus"
                         (HEALTHY UNHEALTHY UNKNOWN), "exitCode" (int), "reason"}]
                       merged by name into the task's containers (unknown names refused)
       publicIp        the ENI's public IP (EC2 DescribeNetworkInterfaces then shows
                       Association.PublicIp); null removes it
     Implied, unless given: lastStatus RUNNING sets startedAt (now) and connectivity
     CONNECTED; desiredStatus STOPPED sets stoppingAt (now); lastStatus STOPPED sets
     desiredStatus STOPPED, stoppedAt (now), stoppingAt, deletes the ENI and marks the
     attachment DELETED, as ECS does.
     -> {"task": Task}

GET  /_sandbox/ecs/services?cluster=NAME
     -> {"services": [Service, ...]}

POST /_sandbox/ecs/services/CLUSTER/SERVICE
     {"deployments": [{"id": ID (required), "status": PRIMARY|ACTIVE|INACTIVE,
                       "rolloutState": IN_PROGRESS|COMPLETED|FAILED,
                       "rolloutStateReason": text, "failedTasks": int,
                       "desiredCount": int}]}
     Updates deployments by id (updatedAt = now); status INACTIVE removes the deployment
     from the service, as ECS stops listing it; status PRIMARY (a rollback) makes its
     taskDefinition the service's again. Counts of running/pending tasks are derived.
     -> {"service": Service}

POST /_sandbox/ecs/services/CLUSTER/SERVICE/deployments
     {"taskDefinition": ARN or family:revision?, "reason": text?}
     A new PRIMARY deployment (rolloutState IN_PROGRESS), as UpdateService(forceNewDeployment)
     makes; the previous PRIMARY becomes ACTIVE. Default taskDefinition: the service's. A
     circuit breaker's rollback is this call with the last COMPLETED deployment's definition.
     -> 201 {"deployment": Deployment}

POST /_sandbox/ecs/services/CLUSTER/SERVICE/events
     {"message": text}  -> 201 {"event": {"id", "createdAt", "message"}}
     Newest first in DescribeServices, at most 100 kept.

Task = {"taskArn", "taskId", "cluster", "clusterArn", "taskDefinitionArn", "group",
        "startedBy", "launchType", "lastStatus", "desiredStatus", "healthStatus",
        "stoppedReason", "stopCode", "createdAt", "pullStartedAt", "pullStoppedAt",
        "startedAt", "stoppingAt", "stoppedAt", "networkInterfaceId", "attachmentStatus",
        "privateIp", "publicIp",
        "containers": [{"name", "image", "imageDigest", "runtimeId", "lastStatus",
                        "healthStatus", "exitCode", "reason"}]}
Service = {"serviceArn", "serviceName", "cluster", "status", "desiredCount", "runningCount",
           "pendingCount", "taskDefinition", "launchType", "networkConfiguration",
           "deploymentConfiguration", "deployments": [Deployment, ...] (PRIMARY first),
           "events": [...]}
Deployment = {"id" ("ecs-svc/..."), "status", "taskDefinition", "desiredCount",
              "runningCount", "pendingCount", "failedTasks", "rolloutState",
              "rolloutStateReason", "launchType", "createdAt", "updatedAt"}
"""

import argparse
import datetime
import functools
import json
import sys
import threading
import types
import uuid

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import moto
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import ServiceException
from moto.core.utils import utcnow
from moto.ec2 import ec2_backends
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ecr import models as ecr_models
from moto.ecr import responses as ecr_responses
from moto.ecr.exceptions import RepositoryNotFoundException
from moto.ecs import models as ecs_models
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import InvalidParameterException
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

ACCOUNT = DEFAULT_ACCOUNT_ID
TASK_STATES = [
    "PROVISIONING", "PENDING", "ACTIVATING", "RUNNING",
    "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED",
]
HEALTH = ["HEALTHY", "UNHEALTHY", "UNKNOWN"]
STOP_CODES = [
    "TaskFailedToStart", "EssentialContainerExited", "UserInitiated",
    "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice",
]
TASK_TIMES = ["pullStartedAt", "pullStoppedAt", "startedAt", "stoppingAt", "stoppedAt"]
CONTAINER_KEYS = {
    "name", "image", "imageDigest", "runtimeId", "lastStatus", "healthStatus", "exitCode", "reason",
}
DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}

# One lock for every change the admin API or the patches make to moto's ECS objects.
LOCK = threading.RLock()
SETTINGS = {"region": "ap-northeast-1", "registry": ""}


class AdminError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def locked(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with LOCK:
            return fn(*args, **kwargs)

    return wrapper


def parse_time(value, key):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).replace(tzinfo=None)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AdminError(400, f"`{key}`: `{value}` is not an ISO 8601 time")
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return parsed
    raise AdminError(400, f"`{key}` must be an ISO 8601 string or epoch seconds")


def iso(value):
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def one_of(value, allowed, key):
    if value not in allowed:
        raise AdminError(400, f"`{key}` must be one of {', '.join(allowed)}, not `{value}`")
    return value


# --- moto patches -------------------------------------------------------------------------


def task_containers(task, task_definition):
    """One container record per container definition, in ECS's Container shape."""
    eni = eni_details(task)
    containers = []
    for definition in task_definition.container_definitions:
        container = {
            "containerArn": f"arn:aws:ecs:{task.region_name}:{task._account_id}:container/"
            f"{task.cluster_name}/{task.id}/{uuid.uuid4()}",
            "taskArn": task.task_arn,
            "name": definition.get("name"),
            "image": definition.get("image"),
            "lastStatus": "PENDING",
            "healthStatus": "UNKNOWN",
        }
        for key in ("cpu", "memory", "memoryReservation"):
            if definition.get(key) is not None:
                container[key] = str(definition[key])
        if eni:
            container["networkInterfaces"] = [
                {"attachmentId": task.attachments[0]["id"], "privateIpv4Address": eni.get("privateIPv4Address")}
            ]
        containers.append(container)
    return containers


def eni_details(task):
    if not task.attachments:
        return {}
    return {d["name"]: d["value"] for d in task.attachments[0]["details"]}


original_task_init = ecs_models.Task.__init__


def task_init(self, cluster, task_definition, *args, **kwargs):
    original_task_init(self, cluster, task_definition, *args, **kwargs)
    self.last_status = "PROVISIONING"
    self.containers = task_containers(self, task_definition)
    self.created_at = utcnow()
    self.health_status = "UNKNOWN"
    self.stop_code = None
    self.connectivity = None
    self.connectivity_at = None
    self.pull_started_at = None
    self.pull_stopped_at = None
    self.started_at = None
    self.stopping_at = None
    self.stopped_at = None
    self.cpu = task_definition.cpu
    self.memory = task_definition.memory


original_resource_requirements = ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements


def resource_requirements(task_definition):
    # moto adds up container memory and fails on None; Fargate tasks may set memory per task only.
    containers = [
        {**c, "memory": c.get("memory") or c.get("memoryReservation") or 0}
        for c in task_definition.container_definitions
    ]
    return original_resource_requirements(types.SimpleNamespace(container_definitions=containers))


original_stop_task = ecs_models.EC2ContainerServiceBackend.stop_task


@locked
def stop_task(self, cluster_str, task_str, reason):
    cluster = self._get_cluster(cluster_str)
    task_id = task_str.split("/")[-1]
    task = next((t for arn, t in self.tasks.get(cluster.name, {}).items() if arn.endswith(task_id)), None)
    if task is None:
        raise InvalidParameterException("The referenced task was not found.")
    if task.container_instance_arn:
        return original_stop_task(self, cluster_str, task_str, reason)
    if task.desired_status != "STOPPED":
        task.desired_status = "STOPPED"
        task.stopped_reason = reason or "Task stopped by user"
        task.stop_code = "UserInitiated"
        task.stopping_at = utcnow()
    return task


original_list_tasks = ecs_models.EC2ContainerServiceBackend.list_tasks


def list_tasks(self, cluster_str=None, container_instance=None, family=None, started_by=None,
               service_name=None, desiredStatus=None):
    tasks = original_list_tasks(
        self, cluster_str, container_instance, family, started_by, None, desiredStatus or "RUNNING"
    )
    if service_name:
        group = f"service:{service_name.split('/')[-1]}"
        tasks = [t for t in tasks if t.group == group]
    return tasks


original_create_service_response = ecs_responses.EC2ContainerServiceResponse.create_service


@locked
def create_service_response(self):
    result = original_create_service_response(self)
    service = result.result["service"]
    config = self._get_param("deploymentConfiguration") or {}
    service.deployment_configuration = {**DEFAULT_DEPLOYMENT_CONFIGURATION, **config}
    recount(service)
    return result


def new_deployment(service, task_definition_arn, reason=None):
    now = utcnow()
    deployment_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
    for old in service.deployments:
        if old["status"] == "PRIMARY":
            old["status"] = "ACTIVE"
            old["updatedAt"] = now
    deployment = {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": task_definition_arn,
        "desiredCount": service.desired_count,
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "launchType": service.launch_type,
        "platformVersion": service.platform_version,
        "platformFamily": "EC2" if service.launch_type == "EC2" else "FARGATE",
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": reason or f"ECS deployment {deployment_id} in progress.",
    }
    service.deployments.insert(0, deployment)
    recount(service)
    return deployment


original_update_service = ecs_models.EC2ContainerServiceBackend.update_service


@locked
def update_service(self, props):
    force = props.pop("force_new_deployment", False)
    task_definition = props.get("task_definition")
    service = self._get_service(props.get("cluster", "default"), props["service"].split("/")[-1])
    before = service.task_definition
    service = original_update_service(self, props)
    if task_definition:
        service.task_definition = self.describe_task_definition(task_definition).arn
    for deployment in service.deployments:
        if deployment["status"] == "PRIMARY":
            deployment["desiredCount"] = service.desired_count
    if force or service.task_definition != before:
        new_deployment(service, service.task_definition)
    recount(service)
    return service


original_describe_services = ecs_models.EC2ContainerServiceBackend.describe_services


@locked
def describe_services(self, cluster_str, names):
    services, failures = original_describe_services(self, cluster_str, names)
    for service in services:
        recount(service)
    return services, failures


def service_tasks(service):
    backend = service._backend
    group = f"service:{service.name}"
    return [t for t in backend.tasks.get(service.cluster_name, {}).values() if t.group == group]


def recount(service):
    """runningCount/pendingCount of the service and its deployments, counted from its tasks."""
    def counts(tasks):
        live = [t for t in tasks if t.desired_status == "RUNNING"]
        running = sum(1 for t in live if t.last_status == "RUNNING")
        pending = sum(1 for t in live if TASK_STATES.index(t.last_status) < TASK_STATES.index("RUNNING"))
        return running, pending

    tasks = service_tasks(service)
    service.running_count, service.pending_count = counts(tasks)
    for deployment in service.deployments:
        mine = [t for t in tasks if t.started_by == deployment["id"]]
        deployment["runningCount"], deployment["pendingCount"] = counts(mine)


original_put_image = ecr_models.ECRBackend.put_image


def put_image(self, repository_name, image_manifest, image_tag, image_manifest_mediatype=None, digest=None):
    repository = self.repositories.get(repository_name)
    if repository is None:
        raise RepositoryNotFoundException(repository_name, self.account_id)
    mutable = repository.image_tag_mutability == "MUTABLE"
    if mutable and image_tag:
        for image in repository.images:
            if image_tag in image.image_tags and image.image_manifest != image_manifest:
                # ECR keeps the image the tag moved away from, untagged.
                image.remove_tag(image_tag)
                if not image.image_tags:
                    image.image_tag = None
    return original_put_image(self, repository_name, image_manifest, image_tag, image_manifest_mediatype, digest)


original_authorization_token = ecr_responses.ECRResponse.get_authorization_token


def get_authorization_token(self):
    result = original_authorization_token(self)
    expires = utcnow() + datetime.timedelta(hours=12)
    for data in result.result["authorizationData"]:
        data["proxyEndpoint"] = f"http://{SETTINGS['registry']}"
        data["expiresAt"] = expires
    return result


def patch_moto():
    # moto sets an ENI's private DNS name only in VPCs with DNS hostnames, then ECS reads it.
    NetworkInterface.private_dns_name = None
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": sys.maxsize})
    ecs_models.Task.__init__ = task_init
    backend = ecs_models.EC2ContainerServiceBackend
    backend._calculate_task_resource_requirements = staticmethod(resource_requirements)
    backend.stop_task = stop_task
    backend.list_tasks = list_tasks
    backend.update_service = update_service
    backend.describe_services = describe_services
    ecs_responses.EC2ContainerServiceResponse.create_service = create_service_response
    ecr_models.ECRBackend.put_image = put_image
    ecr_responses.ECRResponse.get_authorization_token = get_authorization_token


# --- admin API ----------------------------------------------------------------------------


def ecs(region):
    return ecs_models.ecs_backends[ACCOUNT][region]


def find_cluster(backend, name):
    cluster = backend.clusters.get(name.split("/")[-1])
    if cluster is None:
        raise AdminError(404, f"no cluster `{name}` in {backend.region_name}")
    return cluster


def find_service(backend, cluster, name):
    service = backend.services.get(f"{find_cluster(backend, cluster).name}:{name.split('/')[-1]}")
    if service is None:
        raise AdminError(404, f"no service `{name}` in cluster `{cluster}`")
    return service


def find_task(backend, task_id):
    task_id = task_id.split("/")[-1]
    for tasks in backend.tasks.values():
        for task in tasks.values():
            if task.id == task_id:
                return task
    raise AdminError(404, f"no task `{task_id}` in {backend.region_name}")


def task_view(task):
    eni = eni_details(task)
    eni_id = eni.get("networkInterfaceId")
    public_ip = None
    if eni_id:
        enis = ec2_backends[task._account_id][task.region_name].enis
        public_ip = enis[eni_id].public_ip if eni_id in enis else None
    return {
        "taskArn": task.task_arn,
        "taskId": task.id,
        "cluster": task.cluster_name,
        "clusterArn": task.cluster_arn,
        "taskDefinitionArn": task.task_definition_arn,
        "group": task.group,
        "startedBy": task.started_by,
        "launchType": task.launch_type,
        "lastStatus": task.last_status,
        "desiredStatus": task.desired_status,
        "healthStatus": task.health_status,
        "stoppedReason": task.stopped_reason or None,
        "stopCode": task.stop_code,
        "createdAt": iso(task.created_at),
        **{key: iso(getattr(task, attribute(key))) for key in TASK_TIMES},
        "networkInterfaceId": eni_id,
        "attachmentStatus": task.attachments[0]["status"] if task.attachments else None,
        "privateIp": eni.get("privateIPv4Address"),
        "publicIp": public_ip,
        "containers": [{k: c.get(k) for k in sorted(CONTAINER_KEYS)} for c in task.containers],
    }


def attribute(camel):
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in camel)


def deployment_view(deployment):
    keys = ["id", "status", "taskDefinition", "desiredCount", "runningCount", "pendingCount",
            "failedTasks", "rolloutState", "rolloutStateReason", "launchType"]
    view = {k: deployment.get(k) for k in keys}
    view["createdAt"] = iso(deployment.get("createdAt"))
    view["updatedAt"] = iso(deployment.get("updatedAt"))
    return view


def service_view(service):
    recount(service)
    return {
        "serviceArn": service.arn,
        "serviceName": service.name,
        "cluster": service.cluster_name,
        "status": service.status,
        "desiredCount": service.desired_count,
        "runningCount": service.running_count,
        "pendingCount": service.pending_count,
        "taskDefinition": service.task_definition,
        "launchType": service.launch_type,
        "networkConfiguration": service.network_configuration or None,
        "deploymentConfiguration": getattr(service, "deployment_configuration", None),
        "deployments": [deployment_view(d) for d in service.deployments],
        "events": [{**e, "createdAt": iso(e["createdAt"])} for e in service.events],
    }


def refuse_unknown(body, allowed, what):
    unknown = sorted(set(body) - set(allowed) - {"region"})
    if unknown:
        raise AdminError(400, f"unknown key `{unknown[0]}` in {what} (allowed: {', '.join(sorted(allowed))})")


def start_service_task(backend, body):
    refuse_unknown(body, {"cluster", "service", "deploymentId"}, "a new task")
    for key in ("cluster", "service"):
        if not body.get(key):
            raise AdminError(400, f"`{key}` is required")
    cluster = find_cluster(backend, body["cluster"])
    service = find_service(backend, body["cluster"], body["service"])
    wanted = body.get("deploymentId")
    deployment = next(
        (d for d in service.deployments if (d["id"] == wanted if wanted else d["status"] == "PRIMARY")), None
    )
    if deployment is None:
        raise AdminError(404, f"service `{service.name}` has no deployment `{wanted or 'PRIMARY'}`")
    task_definition = backend.describe_task_definition(deployment["taskDefinition"])
    task = ecs_models.Task(
        cluster=cluster,
        task_definition=task_definition,
        container_instance_arn=None,
        resource_requirements=None,
        backend=backend,
        group=f"service:{service.name}",
        launch_type=service.launch_type or "FARGATE",
        started_by=deployment["id"],
        networking_configuration=service.network_configuration or None,
        platform_version=service.platform_version or "1.4.0",
    )
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    recount(service)
    return task


def update_task(backend, task, body):
    allowed = {"lastStatus", "desiredStatus", "healthStatus", "stoppedReason", "stopCode", "containers", "publicIp",
               *TASK_TIMES}
    refuse_unknown(body, allowed, "a task update")
    times = {key: parse_time(body[key], key) for key in TASK_TIMES if body.get(key) is not None}
    containers = body.get("containers") or []
    if not isinstance(containers, list):
        raise AdminError(400, "`containers` must be a list")
    by_name = {c["name"]: c for c in task.containers}
    for update in containers:
        if not isinstance(update, dict) or "name" not in update:
            raise AdminError(400, "each entry of `containers` needs a `name`")
        refuse_unknown(update, CONTAINER_KEYS, f"container `{update['name']}`")
        if update["name"] not in by_name:
            raise AdminError(400, f"task {task.id} has no container `{update['name']}` (has: {', '.join(by_name)})")
        if "lastStatus" in update:
            one_of(update["lastStatus"], ["PENDING", "RUNNING", "STOPPED"], "containers[].lastStatus")
        if "healthStatus" in update:
            one_of(update["healthStatus"], HEALTH, "containers[].healthStatus")
        if "exitCode" in update and update["exitCode"] is not None and not isinstance(update["exitCode"], int):
            raise AdminError(400, "`containers[].exitCode` must be an integer")
    for key, allowed_values in (("lastStatus", TASK_STATES), ("desiredStatus", ["RUNNING", "STOPPED"]),
                                ("healthStatus", HEALTH), ("stopCode", STOP_CODES)):
        if body.get(key) is not None:
            one_of(body[key], allowed_values, key)

    now = utcnow()
    for update in containers:
        by_name[update["name"]].update({k: v for k, v in update.items() if k != "name"})
    if body.get("healthStatus"):
        task.health_status = body["healthStatus"]
    if body.get("stoppedReason") is not None:
        task.stopped_reason = body["stoppedReason"]
    if body.get("stopCode"):
        task.stop_code = body["stopCode"]
    for key, value in times.items():
        setattr(task, attribute(key), value)
    if body.get("desiredStatus"):
        task.desired_status = body["desiredStatus"]
        if task.desired_status == "STOPPED" and task.stopping_at is None:
            task.stopping_at = now
    if "publicIp" in body:
        set_public_ip(task, body["publicIp"])
    state = body.get("lastStatus")
    if state:
        task.last_status = state
        if state == "RUNNING":
            task.started_at = task.started_at or now
            task.connectivity, task.connectivity_at = "CONNECTED", task.connectivity_at or now
        if state == "STOPPED":
            task.desired_status = "STOPPED"
            task.stopped_at = task.stopped_at or now
            task.stopping_at = task.stopping_at or task.stopped_at
            release_eni(task)
    for service in task._backend.services.values():
        if task.group == f"service:{service.name}" and service.cluster_name == task.cluster_name:
            recount(service)
    return task


def set_public_ip(task, public_ip):
    eni_id = eni_details(task).get("networkInterfaceId")
    enis = ec2_backends[task._account_id][task.region_name].enis
    if eni_id not in enis:
        raise AdminError(400, f"task {task.id} has no network interface to give a public IP")
    enis[eni_id].public_ip = public_ip or None


def release_eni(task):
    eni_id = eni_details(task).get("networkInterfaceId")
    enis = ec2_backends[task._account_id][task.region_name].enis
    if eni_id in enis:
        enis.pop(eni_id)
    if task.attachments:
        task.attachments[0]["status"] = "DELETED"


def update_deployments(service, body):
    refuse_unknown(body, {"deployments"}, "a service update")
    updates = body.get("deployments") or []
    by_id = {d["id"]: d for d in service.deployments}
    fields = {"id", "status", "rolloutState", "rolloutStateReason", "failedTasks", "desiredCount"}
    for update in updates:
        if not isinstance(update, dict) or update.get("id") not in by_id:
            raise AdminError(404, f"service `{service.name}` has no deployment `{(update or {}).get('id')}`")
        refuse_unknown(update, fields, f"deployment `{update['id']}`")
        if "status" in update:
            one_of(update["status"], ["PRIMARY", "ACTIVE", "INACTIVE"], "deployments[].status")
        if "rolloutState" in update:
            one_of(update["rolloutState"], ["IN_PROGRESS", "COMPLETED", "FAILED"], "deployments[].rolloutState")
        for key in ("failedTasks", "desiredCount"):
            if key in update and not isinstance(update[key], int):
                raise AdminError(400, f"`deployments[].{key}` must be an integer")
    now = utcnow()
    for update in updates:
        deployment = by_id[update["id"]]
        deployment.update({k: v for k, v in update.items() if k != "id"})
        deployment["updatedAt"] = now
        if update.get("status") == "PRIMARY":
            # A rollback: the service runs the returning deployment's task definition again.
            service.task_definition = deployment["taskDefinition"]
    service.deployments[:] = [d for d in service.deployments if d["status"] != "INACTIVE"]
    service.deployments.sort(key=lambda d: d["status"] != "PRIMARY")
    recount(service)


def add_event(service, body):
    refuse_unknown(body, {"message"}, "an event")
    if not isinstance(body.get("message"), str) or not body["message"]:
        raise AdminError(400, "`message` is required")
    event = {"id": str(uuid.uuid4()), "createdAt": utcnow(), "message": body["message"]}
    service.events.insert(0, event)
    del service.events[100:]
    return event


@locked
def admin(request):
    body = {}
    if request.method == "POST":
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError as e:
            raise AdminError(400, f"the body is not JSON: {e}")
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
    region = body.get("region") or request.args.get("region") or SETTINGS["region"]
    backend = ecs(region)
    parts = [p for p in request.path.split("/") if p][1:]
    route = (request.method, *parts)
    cluster_filter = request.args.get("cluster")

    if route == ("GET", "health"):
        return 200, {"ok": True, "moto": moto.__version__, "region": SETTINGS["region"],
                     "registry": SETTINGS["registry"]}
    if route == ("GET", "ecs", "tasks"):
        cluster = find_cluster(backend, cluster_filter).name if cluster_filter else None
        tasks = [t for name, ts in backend.tasks.items() if cluster in (None, name) for t in ts.values()]
        return 200, {"tasks": [task_view(t) for t in tasks]}
    if route == ("POST", "ecs", "tasks"):
        return 201, {"task": task_view(start_service_task(backend, body))}
    if len(route) == 4 and route[:3] == ("POST", "ecs", "tasks"):
        return 200, {"task": task_view(update_task(backend, find_task(backend, route[3]), body))}
    if route == ("GET", "ecs", "services"):
        cluster = find_cluster(backend, cluster_filter).name if cluster_filter else None
        services = [s for s in backend.services.values() if cluster in (None, s.cluster_name)]
        return 200, {"services": [service_view(s) for s in services]}
    if len(route) >= 5 and route[:3] == ("POST", "ecs", "services"):
        service = find_service(backend, route[3], route[4])
        if len(route) == 5:
            update_deployments(service, body)
            return 200, {"service": service_view(service)}
        if route[5:] == ("deployments",):
            refuse_unknown(body, {"taskDefinition", "reason"}, "a new deployment")
            definition = service.task_definition
            if body.get("taskDefinition"):
                definition = backend.describe_task_definition(body["taskDefinition"]).arn
            return 201, {"deployment": deployment_view(new_deployment(service, definition, body.get("reason")))}
        if route[5:] == ("events",):
            event = add_event(service, body)
            return 201, {"event": {**event, "createdAt": iso(event["createdAt"])}}
    raise AdminError(404, f"no admin route {request.method} {request.path}")


class SandboxApp:
    """moto's dispatcher, with /_sandbox/ answered by the admin API."""

    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith("/_sandbox/"):
            return self.moto(environ, start_response)
        request = Request(environ)
        try:
            status, body = admin(request)
        except AdminError as e:
            status, body = e.status, {"error": str(e)}
        except ServiceException as e:
            status, body = 400, {"error": f"{e.code}: {e.message}"}
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        return response(environ, start_response)


def main():
    parser = argparse.ArgumentParser(description="moto server for the zenn-clone sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", default="ap-northeast-1")
    parser.add_argument("--registry", required=True, help="host:port of the sandbox registry")
    args = parser.parse_args()
    SETTINGS.update(region=args.region, registry=args.registry)
    patch_moto()
    server = make_server(args.host, args.port, SandboxApp(), threaded=True)
    print(f"moto {moto.__version__} (sandbox) listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
