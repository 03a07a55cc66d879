-- compose.yaml only: the roles CloudNativePG makes in Kubernetes (deploy/k8s/base/postgres/cluster.yaml),
-- made here by the postgres image's first start (/docker-entrypoint-initdb.d, on an empty data volume).
-- The superuser is used by nobody but this script: `intake` owns the database and runs migrations,
-- the API and the worker log in as their least-privilege roles, which `intake migrate` grants row
-- access to (sql/grants.sql). Development-only passwords, as in deploy/k8s/overlays/dev.
CREATE ROLE intake LOGIN PASSWORD 'dev-intake-owner-not-a-secret';
ALTER DATABASE intake OWNER TO intake;
CREATE ROLE intake_api LOGIN PASSWORD 'dev-intake-api-not-a-secret' CONNECTION LIMIT 50;
CREATE ROLE intake_worker LOGIN PASSWORD 'dev-intake-worker-not-a-secret' CONNECTION LIMIT 50;
