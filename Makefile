# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run stop test test-azure unit integration lint fmt tsql-gate bench bench-burst bench-export chaos deps build clean openapi fuzz

## run: start the local PostgreSQL cluster (.data/pg, 127.0.0.1:55432) and the control plane on 127.0.0.1:8080
run: deps
	@infra/pg-local.sh start
	$(CARGO) build --release -p server -p tenantctl
	@# Development: local tokens (`tenantctl token`) unless a mode or config file is given.
	@# Also a warm pool of 4 databases (README, "The warm pool") unless a config file is given.
	@if [ -z "$${TENANT_CP_AUTH_MODE:-}" ] && [ -z "$${TENANT_CP_CONFIG:-}" ]; then \
		export TENANT_CP_AUTH_MODE=local; fi; \
	if [ -z "$${TENANT_CP_CONFIG:-}" ]; then export TENANT_CP_WARM_POOL_SIZE=$${TENANT_CP_WARM_POOL_SIZE:-4}; fi; \
	exec ./target/release/tenant-control-plane

## stop: stop the local PostgreSQL cluster
stop:
	@infra/pg-local.sh stop

## test: format, lint, the T-SQL and Bicep parse gates, schemathesis against a running server, every test
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@infra/tsql-gate.sh
	@infra/azure/validate.sh
	@infra/fuzz.sh
	@if [ -n "$$MSSQL_URL" ]; then \
		echo "sqlserver conformance: running against MSSQL_URL"; \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "sqlserver conformance: skipped (MSSQL_URL not set)"; \
		$(CARGO) nextest run --workspace --no-fail-fast -E 'not (package(tcp-tests) & test(/^sqlserver::/))'; \
	fi

## test-azure: the SQL Server conformance suite against Azure SQL Database: AZURE_SQL_SERVER=<name>.database.windows.net AZURE_SQL_POOL=<elastic pool> [AZURE_SQL_AUTH=azure_cli|managed_identity|workload_identity] (infra/azure/README.md)
test-azure:
	@cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
	@if [ -z "$$AZURE_SQL_SERVER" ] || [ -z "$$AZURE_SQL_POOL" ]; then \
		echo "test-azure: set AZURE_SQL_SERVER=<name>.database.windows.net and AZURE_SQL_POOL=<elastic pool> (hint: infra/azure/README.md)"; \
		exit 2; \
	fi
	MSSQL_URL="sqlserver://$$AZURE_SQL_SERVER:1433?auth=$${AZURE_SQL_AUTH:-azure_cli}" \
	AZURE_SQL_POOL="$$AZURE_SQL_POOL" \
		$(CARGO) nextest run -p tcp-tests --no-fail-fast -E 'test(/^sqlserver::/)'

## bench: onboard/offboard 100 tenants (200 offboardings) through the API, then roll a migration out to 200 (BENCH_ROLLOUT_TENANTS), each vs a plain psql baseline, then export a tenant of 1,000,000 rows; writes docs/benchmarks.md
bench: deps
	$(CARGO) build --release -p server -p tcp-tests --bins
	./target/release/bench-onboarding --tenants $${BENCH_TENANTS:-100} --out docs/benchmarks.md
	./target/release/bench-rollout --tenants $${BENCH_ROLLOUT_TENANTS:-200} --out docs/benchmarks.md
	./target/release/bench-export --rows $${BENCH_EXPORT_ROWS:-1000000} --out docs/benchmarks.md

## bench-export: export one tenant of 1,000,000 rows through the API; writes docs/benchmarks.md
bench-export: deps
	$(CARGO) build --release -p server -p tcp-tests --bins
	./target/release/bench-export --rows $${BENCH_EXPORT_ROWS:-1000000} --out docs/benchmarks.md

## bench-burst: 1,000 onboardings then 1,000 offboardings from 8 concurrent clients (warm pool 50); peak memory and connections; writes docs/benchmarks.md
bench-burst: deps
	$(CARGO) build --release -p server -p tcp-tests --bins
	./target/release/bench-burst --tenants $${BENCH_BURST_TENANTS:-1000} --clients 8 --pool 50 --out docs/benchmarks.md

## chaos: the chaos tests' long form (ten times the operations, outages of 30 s for the catalog and 60 s for Key Vault); each prints a `chaos:` line for docs/reliability.md
chaos: deps
	$(CARGO) build -p server --bins
	TCP_CHAOS_SCALE=$${TCP_CHAOS_SCALE:-10} $(CARGO) nextest run -p tcp-tests -E 'binary(chaos)' --no-capture

## openapi: regenerate docs/openapi.json from the code (a test fails when it is stale)
openapi:
	$(CARGO) run -q -p server --example openapi > docs/openapi.json

## fuzz: schemathesis against a release server on the local cluster (no 5xx, no schema breaks)
fuzz: deps
	@infra/fuzz.sh

## deps: install what the build and tests need when missing (PostgreSQL 15 server, nextest)
deps:
	@infra/deps.sh

build:
	$(CARGO) build --workspace

clean: stop
	rm -rf .data
