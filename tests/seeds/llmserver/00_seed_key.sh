# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("Admin & Operations Guide", intro and "Typical Operator
# Workflow" step 2): `make seed-key API_KEY=<value>`. portal has no Makefile; its equivalent command is
# `portal seed-key --key <value>` (an admin key, only its hash stored).
# Substituted: make seed-key API_KEY=<value> -> ${PORTAL} seed-key --key "${API_KEY}" (PORTAL: how to run
# the portal command, default `portal`). The database comes from PORTAL_DATABASE_URL as for any command.

${PORTAL:-portal} seed-key --key "${API_KEY}"
