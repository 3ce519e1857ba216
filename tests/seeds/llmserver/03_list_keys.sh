# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("2. API Key Management" > GET /v1/admin/keys), verbatim.
# Substituted: http://localhost:8080/api -> ${PORTAL_URL} (the seed's nginx prefix /api; portal serves
# /v1/... at the root); <admin-key> -> ${ADMIN_KEY}. Nothing else.

curl ${PORTAL_URL}/v1/admin/keys \
  -H "X-API-Key: ${ADMIN_KEY}"
