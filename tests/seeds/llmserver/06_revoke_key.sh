# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("2. API Key Management" > DELETE /v1/admin/keys/{key}:
# "Revoke an API key"). The seed gives only the method and path; this is that request written like the
# seed's other calls. ${KEY}: the key (its id, its value or its display prefix).

curl -X DELETE ${PORTAL_URL}/v1/admin/keys/${KEY} \
  -H "X-API-Key: ${ADMIN_KEY}"
