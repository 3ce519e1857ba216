# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("2. API Key Management" > POST /v1/admin/keys).
# The seed gives the method, the path and the body ("conceptual"), no curl line; this is that request
# written like the seed's other calls (X-API-Key with an admin key). Body verbatim:
# {"label": "client-a", "role": "default"}. ${PORTAL_URL} is the server (no /api prefix, see 03).

curl -X POST ${PORTAL_URL}/v1/admin/keys \
  -H "X-API-Key: ${ADMIN_KEY}" \
  -H "Content-Type: application/json" \
  -d '{
    "label": "client-a",
    "role": "default"
  }'
