# Keystone operator — see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CLUSTER ?= local

.PHONY: help build generate run test lint fmt control-plane cluster-up cluster-down clean-cache

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## Build the three controllers and crdgen
	cargo build --locked --bins

generate: ## Regenerate the CRDs into manifests/crds and the chart
	hack/gen-crds.sh

run: ## Start the local control plane, install CRDs, run the controllers, apply the sample (CLUSTER=current: your cluster, no sample)
	CLUSTER=$(CLUSTER) hack/run.sh

test: ## fmt check, clippy -D warnings, generated files, unit + integration tests on a real control plane
	hack/test.sh

lint: ## clippy with -D warnings
	cargo clippy --locked --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

control-plane: ## Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kubectl
	hack/build-control-plane.sh

cluster-up: ## Start (or reuse) the local control plane `dev`
	hack/local-cluster.sh up --name dev

cluster-down: ## Stop the local control plane `dev`
	hack/local-cluster.sh down --name dev
