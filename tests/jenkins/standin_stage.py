"""A stand-in for the `mlci <stage>` step of a Jenkinsfile stage, for builds that prove the
Jenkinsfile's conditions rather than the stages (tests/test_jenkins_monitor.py).

It writes what the stage would hand on, through mlci's real Jenkins runtime adapter
(JenkinsRuntime.set_outputs: `.mlci/out/jenkins/<MLCI_JOB>.properties`, which the Jenkinsfile
stashes or reads with readProperties), a passing JUnit report where the stage publishes one,
a stand-in `.mlci/mlflow.db` for the real registry scripts to keep, and appends the job to
$MLCI_TEST_RAN. For the monitor it writes the reports the monitor
stage archives and the decision $MLCI_TEST_RETRAIN names ('true' or 'false'), with one
violated signal in monitor.xml when it retrains: the real `mlci monitor` is not on this branch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlci.providers.jenkins.render import JUNIT
from mlci.providers.jenkins.runtime import JenkinsRuntime
from mlci.stage_specs import STAGES

job = os.environ["MLCI_JOB"]
spec = next(s for s in STAGES if job == s.ci_id or job.startswith(f"{s.ci_id}-"))
with open(os.environ["MLCI_TEST_RAN"], "a", encoding="utf-8") as ran:
    ran.write(job + "\n")
outputs: dict[str, object] = {o.name: "1" for o in spec.outputs}
outputs["result"] = "passed"
if spec.name == "monitor":
    retrain = os.environ["MLCI_TEST_RETRAIN"] == "true"
    decision = "retrain" if retrain else "hold"
    # A value with a colon, an equals sign and a space: readProperties must undo the adapter's escapes.
    outputs.update(retrain="true" if retrain else "false", decision=f"{decision}: accuracy_score = 0.7")
    output = Path(".mlci/monitor")
    output.mkdir(parents=True, exist_ok=True)
    (output / "decision.json").write_text(json.dumps({"mlci_monitor_decision": 1, "decision": decision}))
    (output / "report.html").write_text("<html><body>report</body></html>")
    failure = "<failure message='violated'/>" if retrain else ""
    case = f"<testcase classname='monitor' name='accuracy_score @ 2024-01-01'>{failure}</testcase>"
else:
    case = f"<testcase classname='{job}' name='stand-in'/>"
if spec.name in JUNIT:
    report = Path(JUNIT[spec.name])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f"<testsuite name='{job}' tests='1'>{case}</testsuite>")
# The local MLflow store the real registry scripts keep and restore (train creates it).
store = Path(".mlci/mlflow.db")
if not store.exists():
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(f"stand-in store, created by {job}")
JenkinsRuntime().set_outputs(outputs, os.environ)
