# The Makefile is the interface: every command installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STAGE ?= dev

export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install test unit lint typecheck run demo web web-types screenshots package cfn-lint deploy bench faults clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# The browser tests drive the system's Chromium (Playwright cannot download its own browser here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install: Chromium is missing at $(CHROMIUM) and apt-get is not available"; exit 2; }
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

install: $(STAMP) $(CHROMIUM)

## make test: the whole test suite (unit, integration on moto, infrastructure, end-to-end).
test: $(STAMP) $(CHROMIUM) web
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check functions app.py tests local bench infrastructure
	$(BIN)/ruff format --check functions app.py
	$(BIN)/mypy functions app.py

## make run: the whole system locally on a moto server, and the Postbacks page on WEB_PORT (docs/contract.md §8). Ctrl-C stops it.
run: $(STAMP) web
	POSTBACKS_LOCAL_MODE=1 POSTBACKS_ALLOW_PRIVATE_TARGETS=$${POSTBACKS_ALLOW_PRIVATE_TARGETS-1} \
		$(BIN)/python -m local.stack

## make web: build the Postbacks page (web/dist) when its sources changed (npm ci from the lock file, then the build).
web: $(STAMP)
	$(BIN)/python -m local.web_build

## make screenshots: retake docs/screenshots/*.png (the browser tests, with the screenshots kept).
screenshots: $(STAMP) $(CHROMIUM) web
	POSTBACKS_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e/browser -k create_a_global

## make web-types: regenerate web/openapi.json from the API's code and the page's types from it.
web-types: $(STAMP)
	$(BIN)/python -m functions.api.openapi > web/openapi.json
	cd web && { test -d node_modules || npm ci --no-audit --no-fund; } && npm run generate
	$(BIN)/python -m local.web_build

## make demo: with `make run` going in another terminal, walks through a postback firing.
demo: $(STAMP)
	$(BIN)/python -m local.demo

## make package STAGE=dev: dist/deployment.zip + dist/sam.json (chalice package + merge template), cfn-lint.
package: $(STAMP)
	$(BIN)/python -m infrastructure.package --stage $(STAGE) --output dist

## make cfn-lint: lint the template `make package` generated (the merge template alone is not a stack).
cfn-lint: $(STAMP)
	@test -f dist/sam.json || { echo "cfn-lint: run make package first"; exit 2; }
	$(BIN)/cfn-lint dist/sam.json

## make deploy STAGE=prod DEPLOY_BUCKET=... [CONVERSIONS_STREAM_ARN=...]: see docs/deploy.md.
DEPLOY_BUCKET ?=
CONVERSIONS_STREAM_ARN ?=
# The secret's ARN (never its value) goes to CloudFormation; the API reads the value at cold start.
JWT_SECRET_ID ?= postbacks/$(STAGE)/jwt-secret
JWT_ISSUER ?=
JWT_AUDIENCE ?=
ON_CALL_EMAIL ?=
CORS_ORIGINS ?=
deploy: package web
	@test -n "$(DEPLOY_BUCKET)" || { echo "deploy: set DEPLOY_BUCKET (an S3 bucket for the code)"; exit 2; }
	@command -v aws >/dev/null || { echo "deploy: the AWS CLI v2 is required"; exit 2; }
	aws cloudformation package --template-file dist/sam.json --s3-bucket $(DEPLOY_BUCKET) \
		--s3-prefix postbacks/$(STAGE) --output-template-file dist/packaged.json
	aws cloudformation deploy --template-file dist/packaged.json --stack-name postbacks-$(STAGE) \
		--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
		--parameter-overrides Stage=$(STAGE) ConversionsStreamArn=$(CONVERSIONS_STREAM_ARN) \
		OnCallEmail=$(ON_CALL_EMAIL) JwtIssuer=$(JWT_ISSUER) JwtAudience=$(JWT_AUDIENCE) CorsOrigins=$(CORS_ORIGINS) \
		JwtSecretArn="$$(aws secretsmanager describe-secret --secret-id $(JWT_SECRET_ID) --query ARN --output text)"
	bucket="$$(aws cloudformation describe-stacks --stack-name postbacks-$(STAGE) \
		--query "Stacks[0].Outputs[?OutputKey=='PageBucketName'].OutputValue" --output text)" && \
	aws s3 sync web/dist "s3://$$bucket" --delete --exclude .postbacks-build

## make faults: the fault campaign at full size (docs/fault-campaign.md): SCENARIOS (5000), SEED (1),
## WITHOUT="fix ..." to turn fixes off; the report is printed, its JSON in bench/results/faults.json.
SCENARIOS ?= 5000
SEED ?= 1
WITHOUT ?=
faults: $(STAMP)
	$(BIN)/python -m tests.faults --scenarios $(SCENARIOS) --seed $(SEED) $(foreach fix,$(WITHOUT),--without $(fix)) \
		--json bench/results/faults.json

## make bench: the benchmarks (bench/), one table; JSON in bench/results/. See docs/performance.md.
## make bench: every benchmark, one table (bench/results/latest.json); builds the package it measures first.
bench: package
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) vendor dist .pytest_cache .mypy_cache .ruff_cache
