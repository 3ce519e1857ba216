# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("1. Usage & Quotas" > GET /v1/me/usage), verbatim.
# Substituted: http://localhost:8080/api -> ${PORTAL_URL} (the seed's nginx serves the API under /api;
# portal serves /v1/... at the root); <your-key> -> ${USER_KEY}. Nothing else.

curl ${PORTAL_URL}/v1/me/usage \
  -H "X-API-Key: ${USER_KEY}"
