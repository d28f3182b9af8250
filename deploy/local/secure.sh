# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# The secure mode of the local stack (sourced by lib.sh; not run): `make stack-up SECURE=1`.
#
#   Kafka: the client listener speaks SASL_SSL (SCRAM-SHA-512 over TLS); the KRaft controller
#          listener speaks TLS with client certificates (mutual TLS: SCRAM cannot authenticate
#          a controller, whose credentials live in the metadata it serves).
#   Redis: TLS only (no plaintext port), the `default` user disabled, one ACL user.
#
# At the first start, in $RUN_DIR/secure (mode 700; never in the repository):
#   ca.pem, ca.key          a throw-away certificate authority (30 days)
#   server.crt, server.key  the certificate of 127.0.0.1/localhost, signed by it (Kafka, Redis)
#   server.pem              key + certificate, Kafka's PEM key store
#   kafka.password          the SCRAM-SHA-512 password of the client user (KAFKA_SASL_USERNAME)
#   kafka-admin.password    the broker's own SCRAM user (inter-broker listener)
#   redis.password          the password of the Redis ACL user (REDIS_USERNAME)
#   client.env              the client settings (agents/security.py): `set -a; . FILE; set +a`
# Passwords are random (openssl rand) unless STACK_KAFKA_PASSWORD / STACK_REDIS_PASSWORD are
# set at the first start; they never appear on a command line except the storage format's.
# Certificates are renewed at start-up when they expire within a day.

STACK_SECURE_DIR="$RUN_DIR/secure"
STACK_KAFKA_USER="${STACK_KAFKA_USER:-engagement}"
STACK_REDIS_USER="${STACK_REDIS_USER:-engagement}"
SCRAM_MECHANISM=SCRAM-SHA-512

secure_enabled() { [[ "$STACK_SECURE" == 1 ]]; }

# A password file: kept when it exists, else from the variable named $2, else random.
_secure_password_file() {
    local file="$1" var="$2"
    if [[ ! -s "$file" ]]; then
        (
            umask 077
            if [[ -n "${!var:-}" ]]; then
                printf '%s' "${!var}" >"$file"
            else
                openssl rand -hex 24 | tr -d '\n' >"$file"
            fi
        )
    fi
}

_secure_certs() {
    local d="$STACK_SECURE_DIR"
    if [[ -s "$d/server.pem" && -s "$d/ca.pem" ]] &&
        openssl x509 -checkend 86400 -noout -in "$d/server.crt" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$d/ca.pem" >/dev/null 2>&1; then
        return
    fi
    log "secure: generating a CA and the server certificate in $(rel "$d")"
    local ext="$d/server.ext"
    printf '%s\n' "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$ext"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/ca.key" -out "$d/ca.pem" -days 30 -subj "/CN=engagement local CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
                -CAcreateserial -out "$d/server.crt" -days 30 -extfile "$ext" &&
            cat "$d/server.key" "$d/server.crt" >"$d/server.pem"
    ) >"$LOG_DIR/openssl.log" 2>&1 || die "secure: openssl failed; see $(rel "$LOG_DIR/openssl.log")"
    rm -f "$d/server.csr" "$ext"
}

# Credentials, certificates and the client settings; exports the client settings, so the
# topic creation (agents.admin) of stack-up.sh connects the secure way.
secure_prepare() {
    command -v openssl >/dev/null || die "openssl not found (deploy/local/install-packages.sh)"
    mkdir -p "$STACK_SECURE_DIR"
    chmod 700 "$STACK_SECURE_DIR"
    _secure_password_file "$STACK_SECURE_DIR/kafka.password" STACK_KAFKA_PASSWORD
    _secure_password_file "$STACK_SECURE_DIR/kafka-admin.password" STACK_KAFKA_ADMIN_PASSWORD
    _secure_password_file "$STACK_SECURE_DIR/redis.password" STACK_REDIS_PASSWORD
    _secure_certs
    local d="$STACK_SECURE_DIR"
    (
        umask 077
        cat >"$d/client.env" <<EOF
# Client settings of the secure local stack (agents/security.py); no secret in this file.
KAFKA_BOOTSTRAP=$STACK_HOST:$KAFKA_PORT
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=$SCRAM_MECHANISM
KAFKA_SASL_USERNAME=$STACK_KAFKA_USER
KAFKA_SASL_PASSWORD_FILE=$d/kafka.password
KAFKA_SSL_CAFILE=$d/ca.pem
REDIS_URL=rediss://$STACK_HOST:$REDIS_PORT/0
REDIS_USERNAME=$STACK_REDIS_USER
REDIS_PASSWORD_FILE=$d/redis.password
REDIS_SSL_CAFILE=$d/ca.pem
EOF
    )
    set -a
    # shellcheck disable=SC1091
    source "$d/client.env"
    set +a
}

# Append the secure listeners to a rendered server.properties (a later key wins).
secure_kafka_properties() {
    local props="$1" d="$STACK_SECURE_DIR" admin_pw
    admin_pw="$(cat "$d/kafka-admin.password")"
    chmod 600 "$props"
    cat >>"$props" <<EOF

# --- secure mode (deploy/local/secure.sh) ---
listeners=SASL_SSL://$STACK_HOST:$KAFKA_PORT,CONTROLLER://$STACK_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$STACK_HOST:$KAFKA_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=$SCRAM_MECHANISM
sasl.mechanism.inter.broker.protocol=$SCRAM_MECHANISM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
ssl.keystore.type=PEM
ssl.keystore.location=$d/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$d/ca.pem
ssl.endpoint.identification.algorithm=https
listener.name.controller.ssl.client.auth=required
EOF
}

# The arguments of the storage format that create the SCRAM users (KRaft: in the metadata log).
secure_format_args() {
    local d="$STACK_SECURE_DIR"
    printf '%s\n' --add-scram "$SCRAM_MECHANISM=[name=admin,password=$(cat "$d/kafka-admin.password")]" \
        --add-scram "$SCRAM_MECHANISM=[name=$STACK_KAFKA_USER,password=$(cat "$d/kafka.password")]"
}

# Append TLS and the ACL user to a rendered redis.conf.
secure_redis_conf() {
    local conf="$1" d="$STACK_SECURE_DIR"
    chmod 600 "$conf"
    cat >>"$conf" <<EOF

# --- secure mode (deploy/local/secure.sh) ---
port 0
tls-port $REDIS_PORT
tls-cert-file $d/server.crt
tls-key-file $d/server.key
tls-ca-cert-file $d/ca.pem
tls-auth-clients no
user default off
user $STACK_REDIS_USER on >$(cat "$d/redis.password") ~* &* +@all
EOF
}

# redis-cli against this stack's Redis (TLS and the ACL user in secure mode; the password
# through REDISCLI_AUTH, never on the command line).
stack_redis_cli() {
    if secure_enabled; then
        REDISCLI_AUTH="$(cat "$STACK_SECURE_DIR/redis.password")" redis-cli --no-auth-warning \
            --tls --cacert "$STACK_SECURE_DIR/ca.pem" --user "$STACK_REDIS_USER" \
            -h "$STACK_HOST" -p "$REDIS_PORT" "$@"
    else
        redis-cli -h "$STACK_HOST" -p "$REDIS_PORT" "$@"
    fi
}
