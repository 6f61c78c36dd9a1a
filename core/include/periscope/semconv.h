/*
 * periscope plugin API: the metric and label names that more than one part
 * of periscope uses, in one place: the plugins that produce a family and the
 * alert rules that read it must agree, letter for letter. OpenTelemetry
 * semantic-convention names translated to Prometheus where one exists;
 * periscope_ otherwise (DESIGN.md's metric catalog).
 */
#ifndef PERISCOPE_SEMCONV_H
#define PERISCOPE_SEMCONV_H

/* Every series' first label. */
#define PS_L_SERVICE_NAME "service_name"

/* HTTP */
#define PS_M_HTTP_SERVER_DURATION "http_server_request_duration_seconds"
#define PS_M_HTTP_CLIENT_DURATION "http_client_request_duration_seconds"
#define PS_M_HTTP_SERVER_REQUEST_BODY "http_server_request_body_size_bytes"
#define PS_M_HTTP_SERVER_RESPONSE_BODY "http_server_response_body_size_bytes"
#define PS_L_HTTP_METHOD "http_request_method"
#define PS_L_HTTP_STATUS "http_response_status_code"
#define PS_L_HTTP_ROUTE "http_route"
#define PS_L_URL_SCHEME "url_scheme"
#define PS_L_SERVER_ADDRESS "server_address"
#define PS_L_SERVER_PORT "server_port"

/* Databases */
#define PS_M_DB_CLIENT_DURATION "db_client_operation_duration_seconds"
#define PS_M_DB_SERVER_DURATION "db_server_operation_duration_seconds"
#define PS_L_DB_SYSTEM "db_system_name"
#define PS_L_DB_OPERATION "db_operation_name"
#define PS_L_DB_COLLECTION "db_collection_name"
#define PS_L_DB_NAMESPACE "db_namespace"
#define PS_L_DB_STATUS "db_response_status_code"

/* Messaging */
#define PS_M_MESSAGING_CLIENT_DURATION "messaging_client_operation_duration_seconds"
#define PS_M_MESSAGING_SENT "messaging_client_sent_messages_total"
#define PS_M_MESSAGING_CONSUMED "messaging_client_consumed_messages_total"
#define PS_L_MESSAGING_SYSTEM "messaging_system"
#define PS_L_MESSAGING_OPERATION "messaging_operation_name"
#define PS_L_MESSAGING_DESTINATION "messaging_destination_name"
#define PS_L_ERROR_TYPE "error_type"

/* TCP */
#define PS_M_TCP_OPENED "periscope_tcp_connections_opened_total"
#define PS_M_TCP_FAILED "periscope_tcp_connections_failed_total"
#define PS_M_TCP_RTT "periscope_tcp_rtt_seconds"
#define PS_L_DIRECTION "direction"
#define PS_L_PEER_ADDRESS "peer_address"
#define PS_L_PEER_PORT "peer_port"

#endif
