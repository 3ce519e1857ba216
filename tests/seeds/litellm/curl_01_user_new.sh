# Seed: /work/shared/seeds/001_ee8eae383d44bb65.txt ("Usando curl direttamente" > "Creare utente").
# Verbatim but for the URL: the seed's ALB host is ${LITELLM_URL}.

# Via ALB (dall'interno della VPC) - FUNZIONA
curl -X POST "${LITELLM_URL}/user/new" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "user_email": "user@example.com",
    "max_budget": 50,
    "budget_duration": "monthly",
    "models": ["claude-haiku-4-5"]
  }'
