# Seed: /work/shared/seeds/001_ee8eae383d44bb65.txt ("Usando curl direttamente" > "Generare API key").
# Verbatim but for the URL: the seed's ALB host is ${LITELLM_URL}.

# Via ALB (dall'interno della VPC)
curl -X POST "${LITELLM_URL}/key/generate" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "key_alias": "my-key",
    "max_budget": 10,
    "models": ["claude-haiku-4-5"]
  }'
