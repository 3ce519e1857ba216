# Seed: /work/shared/seeds/001_ee8eae383d44bb65.txt ("Usando curl direttamente" > "Listare utenti").
# Verbatim but for the URL: the seed's ALB host is ${LITELLM_URL}.

# Via ALB (dall'interno della VPC)
curl -X GET "${LITELLM_URL}/user/list" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY"
