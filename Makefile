# Keystone operator — see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CLUSTER ?= local

.PHONY: help build release generate bundle-validate run run-dev test test-node images bench e2e lint fmt control-plane helm chart-lint upgrade-crds cluster-up cluster-down node-up node-down clean-cache

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## Build the three controllers and crdgen
	cargo build --locked --bins

release: ## The release build the Dockerfiles and CI run (one invocation, the three controllers)
	cargo build --release --locked -p keystone-api-controller -p keystone-fernet-controller -p keystone-db-controller

generate: ## Regenerate the CRDs (manifests/crds, chart), manifests/install.yaml and the OLM bundle (bundle/)
	hack/gen-crds.sh
	hack/gen-manifests.sh
	hack/gen-bundle.sh

bundle-validate: ## Run OLM's bundle validators (operatorframework suite, offline) on bundle/
	$$(hack/build-olm-validator.sh) bundle

run: ## As root: the real node, images built here, the operator installed by Helm, the sample Keystone Ready (CLUSTER=current: the controllers against your cluster)
	CLUSTER=$(CLUSTER) hack/run.sh

run-dev: ## The controllers as local processes and the process node (fast iteration; e2e/README.md)
	RUN_MODE=dev CLUSTER=$(CLUSTER) hack/run.sh

test: ## fmt check, clippy -D warnings, generated files, unit + integration tests on a real control plane
	hack/test.sh

bench: ## Benchmarks on local control planes: convergence, API requests, scale, memory, rotation, failover (BENCHMARKS.md; ARGS="--phases converge --runs 5 --idle 60s")
	hack/bench.sh $(ARGS)

test-node: ## The real node tier: kubelet + containerd, images built here, the operator installed by Helm (root; e2e/README.md)
	hack/test-node.sh

images: ## Build the images for the real node from Debian packages and PyPI (root; hack/images.sh)
	hack/images.sh all

e2e: ## End-to-end scenarios: a real Keystone on the local node (root; e2e/README.md)
	hack/e2e.sh

lint: ## clippy with -D warnings
	cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

fmt: ## Format the code
	cargo fmt --all

helm: ## Build (or reuse) helm from its Go module
	hack/build-helm.sh

chart-lint: ## helm lint --strict the chart
	$$(hack/build-helm.sh) lint --strict charts/keystone-operator

upgrade-crds: ## Apply this checkout's CRDs to the current kubectl context (helm never upgrades CRDs)
	hack/upgrade-crds.sh

control-plane: ## Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kubectl
	hack/build-control-plane.sh

cluster-up: ## Start (or reuse) the local control plane `dev`
	hack/local-cluster.sh up --name dev

cluster-down: ## Stop the local control plane `dev`
	hack/local-cluster.sh down --name dev

node-up: ## Start the real node `dev` and its control plane (root; hack/node.sh)
	hack/node.sh up --name dev

node-down: ## Stop the real node `dev` and its control plane, undo its host changes (and the process node of run-dev)
	hack/node.sh down --name dev
	hack/local-node.sh down --name dev
