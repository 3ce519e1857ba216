# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("3. Log Access" > GET /v1/admin/logs, the three
# "potential usage patterns", and "Typical Operator Workflow" step 6 "Inspect logs"). Step 6 is verbatim
# with http://localhost:8080/api -> ${PORTAL_URL} (the seed's nginx prefix; portal serves /v1/... at the
# root) and <admin-key> -> ${ADMIN_KEY}; the patterns (paths only in the seed) are sent the same way.
# (The four JSON answers follow each other on stdout; the test reads them one by one.)

curl ${PORTAL_URL}/v1/admin/logs \
  -H "X-API-Key: ${ADMIN_KEY}"
curl "${PORTAL_URL}/v1/admin/logs?limit=100" -H "X-API-Key: ${ADMIN_KEY}"
curl "${PORTAL_URL}/v1/admin/logs?model=mistral" -H "X-API-Key: ${ADMIN_KEY}"
curl "${PORTAL_URL}/v1/admin/logs?cached=true" -H "X-API-Key: ${ADMIN_KEY}"
