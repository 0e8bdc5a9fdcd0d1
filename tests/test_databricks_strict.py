"""The double's strict body check (tests/databricks_double/strict.py) against the SDK's own types."""

from __future__ import annotations

from typing import Any

import pytest
from databricks.sdk.service import compute, jobs, serving
from databricks_double.server import Invalid
from databricks_double.strict import problems, require_valid


def _submit_body() -> dict[str, Any]:
    task = jobs.SubmitTask(
        task_key="train",
        python_wheel_task=jobs.PythonWheelTask(
            package_name="mlci", entry_point="mlci", parameters=["databricks-task", "train"]
        ),
        environment_key="mlci",
    )
    environment = jobs.JobEnvironment(
        environment_key="mlci",
        spec=compute.Environment(environment_version="3", dependencies=["mlci==0.1.0", "/Volumes/c/s/v/p/1/x.whl"]),
    )
    return {
        "run_name": "p-train",
        "tasks": [task.as_dict()],
        "environments": [environment.as_dict()],
        "timeout_seconds": 600,
        "idempotency_token": "1",
    }


def test_the_body_the_sdk_sends_for_mlcis_training_run_passes() -> None:
    assert problems(jobs.JobsAPI.submit, _submit_body()) == []


def test_a_cluster_job_with_libraries_passes_through_the_compute_module_types() -> None:
    # `Task.compute` (a field) must not shadow the `compute` module that `libraries` names.
    settings = jobs.JobSettings(
        name="p-batch",
        tasks=[
            jobs.Task(
                task_key="batch",
                new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=1),
                libraries=[
                    compute.Library(whl="/Volumes/c/s/v/x.whl"),
                    compute.Library(pypi=compute.PythonPyPiLibrary(package="mlci")),
                ],
                python_wheel_task=jobs.PythonWheelTask(package_name="mlci", entry_point="mlci"),
            )
        ],
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 3 * * ?", timezone_id="UTC"),
    )
    assert problems(jobs.JobsAPI.create, settings.as_dict()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b: b.update(timeout_seconds="600"), "$.timeout_seconds: expected int, got str"),
        (lambda b: b.update(timeout_seconds=True), "$.timeout_seconds: expected int, got bool"),
        (lambda b: b.update(bogus=1), "$.bogus: unknown field of JobsAPI.submit"),
        (
            lambda b: b["tasks"][0].update(spark_python_tsk={}),
            "$.tasks[0].spark_python_tsk: unknown field of SubmitTask",
        ),
        (lambda b: b["tasks"][0].update(run_if="SOMETIMES"), "$.tasks[0].run_if: 'SOMETIMES' not in RunIf"),
        (lambda b: b["tasks"][0].pop("task_key"), "$.tasks[0].task_key: required by SubmitTask"),
        (
            lambda b: b["tasks"][0]["python_wheel_task"].update(parameters="train"),
            "$.tasks[0].python_wheel_task.parameters: expected list, got str",
        ),
        (
            lambda b: b["environments"][0]["spec"].update(dependencies=[1]),
            "$.environments[0].spec.dependencies[0]: expected str, got int",
        ),
        (lambda b: b.update(tasks={"task_key": "x"}), "$.tasks: expected list, got object"),
        (lambda b: b.update(tasks=["train"]), "$.tasks[0]: expected object (SubmitTask), got str"),
    ],
)
def test_each_kind_of_bad_submit_body_is_one_exact_problem(change: Any, problem: str) -> None:
    body = _submit_body()
    change(body)
    assert problems(jobs.JobsAPI.submit, body) == [problem]


def test_serving_update_config_checks_nested_routes_and_leaves_the_path_name_out() -> None:
    body = {
        "served_entities": [{"entity_name": "c.s.m", "entity_version": 3, "workload_size": "Small"}],
        "traffic_config": {"routes": [{"served_model_name": "m-3"}]},
    }
    assert problems(serving.ServingEndpointsAPI.update_config, body, path_params=["name"]) == [
        "$.served_entities[0].entity_version: expected str, got int",
        "$.traffic_config.routes[0].traffic_percentage: required by Route",
    ]
    # Without the path parameter excluded, `name` (in the URL, not the body) would be required.
    assert "$.name: required by ServingEndpointsAPI.update_config" in problems(
        serving.ServingEndpointsAPI.update_config, {}
    )
    assert problems(serving.ServingEndpointsAPI.update_config, {}, path_params=["name"]) == []


def test_a_float_field_takes_an_int_and_a_required_method_parameter_is_named() -> None:
    assert (
        problems(
            serving.ServingEndpointsAPI.query, {"dataframe_records": [{"a": 1}], "temperature": 1}, path_params=["name"]
        )
        == []
    )
    assert problems(serving.ServingEndpointsAPI.create, {"config": {"name": "e"}}) == [
        "$.name: required by ServingEndpointsAPI.create"
    ]


def test_require_valid_raises_the_400_with_every_problem_joined() -> None:
    with pytest.raises(Invalid) as caught:
        require_valid(jobs.JobsAPI.submit, {"run_name": 3, "tasks": [{}]})
    assert str(caught.value) == "$.run_name: expected str, got int; $.tasks[0].task_key: required by SubmitTask"
    assert require_valid(jobs.JobsAPI.cancel_run, {"run_id": 7}) == {"run_id": 7}
    assert problems(jobs.JobsAPI.cancel_run, []) == ["$: expected object (JobsAPI.cancel_run), got list"]
