"""Jenkins: the declarative Jenkinsfile, the shared library and the upgrade job mlci renders
(render.py, templates/ with pins.json), their parse-back (parse.py) and the runtime adapter of
a stage running there (runtime.py).

This module stays light (no Jinja): providers.detect() imports the package for its runtime.
"""

from __future__ import annotations

from mlci.providers.base import PackagedProvider
from mlci.providers.jenkins.runtime import RUNTIME, JenkinsRuntime


class Jenkins(PackagedProvider):
    name = "jenkins"
    managed: tuple[str, ...] = ("Jenkinsfile", "Jenkinsfile.upgrade", ".jenkins/")
    runtime: JenkinsRuntime = RUNTIME
    package = __name__


PROVIDER = Jenkins()
