# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Client Authentication" > "API Key Validation"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}. Nothing else (the client key is the seed's own).

# Client makes request with API key
curl ${BASE_URL}/v1/chat/completions \
  -H "Authorization: Bearer sk-prod-app-key-123" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "gpt-4",
    "messages": [{"role": "user", "content": "Hello"}]
  }'
