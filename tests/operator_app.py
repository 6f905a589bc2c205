"""The operator as `kopf run` loads it in the end-to-end tests: kubetune's handlers, logged in to the
emulator whose address is in $KUBETUNE_TEST_API."""

from __future__ import annotations

import os

import kopf
from kubernetes import client

from kubetune.core.gpu_sharing import GpuSharing
from kubetune.operator import handlers
from kubetune.operator.api import KubernetesApi

URL = os.environ["KUBETUNE_TEST_API"]
configuration = client.Configuration(host=URL)
handlers.configure(GpuSharing(os.environ.get("KUBETUNE_TEST_GPU_SHARING", "whole")),
                   api=KubernetesApi(client.ApiClient(configuration)))


@kopf.on.login()
def login(**_):
    return kopf.ConnectionInfo(server=URL, insecure=True, default_namespace="default")
