#!/usr/bin/env bash
# litellm-users.sh - gestione utenti e API key del gateway LiteLLM (admin API, master key).
#
# Reconstructed from the seed document "LiteLLM User Management Guide"
# (../shared/seeds/001_ee8eae383d44bb65.txt): the commands, flags and environment variables it
# documents, calling LiteLLM's real admin endpoints with LiteLLM's real field names. portal's tests
# run it unchanged against portal's LiteLLM compatible routes.
#
# Uso:
#   export LITELLM_MASTER_KEY="sk-litellm-xxxxxxxxxx"
#   export LITELLM_URL="http://<alb>"      # opzionale (default: http://localhost:4000)
#   ./litellm-users.sh help

set -euo pipefail

LITELLM_URL="${LITELLM_URL:-http://localhost:4000}"
LITELLM_URL="${LITELLM_URL%/}"

usage() {
    cat <<'EOF'
litellm-users.sh - gestione utenti e API key LiteLLM

Uso: ./litellm-users.sh <comando> [opzioni]

Gestione utenti:
  create-user --email EMAIL [--budget N] [--duration D] [--models JSON]
                                  Crea un utente (e la sua API key)
  list-users                      Lista utenti
  get-user <user_id>              Info utente (budget, spesa, chiavi)
  delete-user <user_id>           Elimina un utente e le sue chiavi
  update-budget --user-id ID --budget N
                                  Aggiorna il budget di un utente

Gestione API keys:
  create-key [--alias A] [--budget N] [--duration D] [--models JSON] [--user-id ID]
                                  Genera una API key
  list-keys                       Lista API keys
  delete-key <key>                Elimina una API key

Opzioni:
  --budget N      budget massimo in USD (max_budget)
  --duration D    periodo di reset del budget: monthly, weekly, daily, 30d, 1h... (budget_duration)
  --models JSON   modelli consentiti, es. '["claude-haiku-4-5"]' (default: tutti)

Variabili d'ambiente:
  LITELLM_MASTER_KEY   master key (obbligatoria)
  LITELLM_URL          URL del proxy (default: http://localhost:4000)
EOF
}

die() {
    echo "Errore: $*" >&2
    exit 1
}

require_master_key() {
    [[ -n "${LITELLM_MASTER_KEY:-}" ]] || die "LITELLM_MASTER_KEY non impostata"
}

# api METHOD PATH [JSON_BODY] - chiama l'admin API, stampa la risposta, esce con 1 se HTTP >= 400
api() {
    local method="$1" path="$2" body="${3:-}"
    local args=(-sS -X "$method" "${LITELLM_URL}${path}"
        -H "Authorization: Bearer ${LITELLM_MASTER_KEY}"
        -H "Content-Type: application/json"
        -w $'\n%{http_code}')
    [[ -n "$body" ]] && args+=(-d "$body")
    local response status
    response="$(curl "${args[@]}")" || die "richiesta a ${LITELLM_URL}${path} fallita"
    status="${response##*$'\n'}"
    response="${response%$'\n'*}"
    if [[ "$status" -ge 400 ]]; then
        echo "Errore HTTP $status:" >&2
        echo "$response" | jq . >&2 2>/dev/null || echo "$response" >&2
        exit 1
    fi
    echo "$response" | jq .
}

create_user() {
    local email="" budget="" duration="" models=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --email) email="$2"; shift 2 ;;
            --budget) budget="$2"; shift 2 ;;
            --duration) duration="$2"; shift 2 ;;
            --models) models="$2"; shift 2 ;;
            *) die "opzione sconosciuta: $1" ;;
        esac
    done
    [[ -n "$email" ]] || die "--email obbligatorio"
    local body
    body="$(jq -n --arg email "$email" '{user_email: $email}')"
    [[ -n "$budget" ]] && body="$(jq --argjson b "$budget" '. + {max_budget: $b}' <<<"$body")"
    [[ -n "$duration" ]] && body="$(jq --arg d "$duration" '. + {budget_duration: $d}' <<<"$body")"
    [[ -n "$models" ]] && body="$(jq --argjson m "$models" '. + {models: $m}' <<<"$body")"
    echo "Creazione utente $email..." >&2
    api POST /user/new "$body"
}

create_key() {
    local alias="" budget="" duration="" models="" user_id=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --alias) alias="$2"; shift 2 ;;
            --budget) budget="$2"; shift 2 ;;
            --duration) duration="$2"; shift 2 ;;
            --models) models="$2"; shift 2 ;;
            --user-id) user_id="$2"; shift 2 ;;
            *) die "opzione sconosciuta: $1" ;;
        esac
    done
    local body="{}"
    [[ -n "$alias" ]] && body="$(jq --arg a "$alias" '. + {key_alias: $a}' <<<"$body")"
    [[ -n "$budget" ]] && body="$(jq --argjson b "$budget" '. + {max_budget: $b}' <<<"$body")"
    [[ -n "$duration" ]] && body="$(jq --arg d "$duration" '. + {budget_duration: $d}' <<<"$body")"
    [[ -n "$models" ]] && body="$(jq --argjson m "$models" '. + {models: $m}' <<<"$body")"
    [[ -n "$user_id" ]] && body="$(jq --arg u "$user_id" '. + {user_id: $u}' <<<"$body")"
    echo "Generazione API key..." >&2
    api POST /key/generate "$body"
}

list_users() {
    api GET /user/list
}

list_keys() {
    api GET "/key/list?return_full_object=true"
}

get_user() {
    [[ $# -ge 1 && -n "$1" ]] || die "uso: get-user <user_id>"
    api GET "/user/info?user_id=$(jq -rn --arg u "$1" '$u|@uri')"
}

delete_user() {
    [[ $# -ge 1 && -n "$1" ]] || die "uso: delete-user <user_id>"
    echo "Eliminazione utente $1..." >&2
    api POST /user/delete "$(jq -n --arg u "$1" '{user_ids: [$u]}')"
}

delete_key() {
    [[ $# -ge 1 && -n "$1" ]] || die "uso: delete-key <key>"
    echo "Eliminazione API key..." >&2
    api POST /key/delete "$(jq -n --arg k "$1" '{keys: [$k]}')"
}

update_budget() {
    local user_id="" budget=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --user-id) user_id="$2"; shift 2 ;;
            --budget) budget="$2"; shift 2 ;;
            *) die "opzione sconosciuta: $1" ;;
        esac
    done
    [[ -n "$user_id" && -n "$budget" ]] || die "uso: update-budget --user-id <user_id> --budget N"
    echo "Aggiornamento budget di $user_id a $budget..." >&2
    api POST /user/update "$(jq -n --arg u "$user_id" --argjson b "$budget" '{user_id: $u, max_budget: $b}')"
}

main() {
    local command="${1:-help}"
    [[ $# -gt 0 ]] && shift
    case "$command" in
        help | -h | --help) usage; return 0 ;;
    esac
    require_master_key
    case "$command" in
        create-user) create_user "$@" ;;
        create-key) create_key "$@" ;;
        list-users) list_users ;;
        list-keys) list_keys ;;
        get-user) get_user "$@" ;;
        delete-user) delete_user "$@" ;;
        delete-key) delete_key "$@" ;;
        update-budget) update_budget "$@" ;;
        *) usage >&2; die "comando sconosciuto: $command" ;;
    esac
}

main "$@"
