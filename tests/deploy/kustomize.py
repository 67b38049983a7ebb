"""Render a kustomization in ``deploy/`` as ``kubectl apply -k`` would, for the tests.

Neither kustomize nor kubectl is in the registries this project installs from, so this is the
subset ``deploy/`` uses, and nothing more: ``resources`` (files, or directories with their own
kustomization.yaml), ``labels`` (added to each resource's metadata), and ``patches`` given by
``path`` as strategic-merge patches, one per YAML document of the file (maps merge, ``null``
removes a key, lists of named items merge by ``name``, any other list is replaced). A field it
does not know fails the render, so a kustomize feature used in ``deploy/`` later cannot be
silently ignored by the tests.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizeError", "load_documents", "merge_patch", "render"]

Resource = dict[str, Any]

_KNOWN_FIELDS = {"apiVersion", "kind", "resources", "labels", "patches"}
#: Lists whose items Kubernetes merges by ``name`` in a strategic-merge patch (the ones deploy/ uses).
_MERGED_BY_NAME = {"containers", "initContainers", "volumes", "volumeMounts", "ports", "env"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render exactly."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A key given twice in one map is an error, as it is to kubectl (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        twice = sorted({str(key) for key in keys if keys.count(key) > 1})
        if twice:
            raise KustomizeError(f"line {node.start_mark.line + 1}: {', '.join(twice)} given twice")
        return super().construct_mapping(node, deep=deep)


def load_documents(path: Path) -> list[Resource]:
    """Every non-empty YAML document of a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.load_all(handle, Loader=_UniqueKeyLoader) if doc]


def render(directory: Path) -> list[Resource]:
    """The resources ``kubectl apply -k directory`` would send."""
    kustomization = _kustomization(directory)
    unknown = set(kustomization) - _KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}/kustomization.yaml: not rendered by tests/deploy: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        target = directory / entry
        resources.extend(render(target) if target.is_dir() else load_documents(target))
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{directory}: only `patches: - path: FILE` is rendered, not {sorted(patch)}")
        for document in load_documents(directory / patch["path"]):
            index = _find(resources, document, directory / patch["path"])
            resources[index] = merge_patch(resources[index], document)
    for group in kustomization.get("labels", []):
        if set(group) - {"pairs"}:
            raise KustomizeError(f"{directory}: only `labels: - pairs:` is rendered, not {sorted(group)}")
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    return resources


def merge_patch(target: Any, patch: Any, key: str = "") -> Any:
    """``target`` with the strategic-merge ``patch`` applied (neither is changed)."""
    if isinstance(patch, dict) and isinstance(target, dict):
        out = copy.deepcopy(target)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            elif name in out:
                out[name] = merge_patch(out[name], value, name)
            else:
                out[name] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(target, list) and key in _MERGED_BY_NAME:
        out_list = copy.deepcopy(target)
        for item in patch:
            names = [existing.get("name") for existing in out_list]
            if item.get("name") in names:
                at = names.index(item["name"])
                out_list[at] = merge_patch(out_list[at], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    documents = load_documents(path)
    if len(documents) != 1 or documents[0].get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: one Kustomization document expected")
    kustomization: dict[str, Any] = documents[0]
    return kustomization


def _find(resources: list[Resource], patch: Resource, where: Path) -> int:
    wanted = (patch.get("kind"), patch.get("metadata", {}).get("name"))
    for index, resource in enumerate(resources):
        if (resource.get("kind"), resource.get("metadata", {}).get("name")) == wanted:
            return index
    raise KustomizeError(f"{where}: patches {wanted[0]}/{wanted[1]}, which no resource is")
