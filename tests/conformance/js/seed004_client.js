// The WebSocketClient class exactly as printed in seed 004 (FreeAgentics WebSocket API), run
// under Node with the `ws` package as the WebSocket implementation. Usage:
//   node seed004_client.js <ws-url> <token> <event-type> <count>
// Prints one JSON line per received message; exits 0 after <count> events of <event-type>.
global.WebSocket = require('ws');

class WebSocketClient {
    constructor(url, token) {
        this.url = url;
        this.token = token;
        this.reconnectAttempts = 0;
        this.maxReconnectAttempts = 5;
        this.reconnectDelay = 1000;
    }

    connect() {
        this.ws = new WebSocket(`${this.url}?token=${this.token}`);

        this.ws.onopen = () => {
            console.log('Connected');
            this.reconnectAttempts = 0;
            this.startHeartbeat();
        };

        this.ws.onclose = (event) => {
            console.log('Disconnected:', event.code, event.reason);
            this.stopHeartbeat();

            if (this.reconnectAttempts < this.maxReconnectAttempts) {
                this.scheduleReconnect();
            }
        };

        this.ws.onerror = (error) => {
            console.error('WebSocket error:', error);
        };

        this.ws.onmessage = (event) => {
            this.handleMessage(JSON.parse(event.data));
        };
    }

    scheduleReconnect() {
        const delay = this.reconnectDelay * Math.pow(2, this.reconnectAttempts);
        this.reconnectAttempts++;

        setTimeout(() => {
            console.log(`Reconnecting (attempt ${this.reconnectAttempts})...`);
            this.connect();
        }, delay);
    }

    startHeartbeat() {
        this.heartbeatInterval = setInterval(() => {
            if (this.ws.readyState === WebSocket.OPEN) {
                this.ws.send(JSON.stringify({ type: 'ping' }));
            }
        }, 30000); // 30 seconds
    }

    stopHeartbeat() {
        if (this.heartbeatInterval) {
            clearInterval(this.heartbeatInterval);
        }
    }

    handleMessage(message) {
        switch (message.type) {
            case 'pong':
                console.log('Heartbeat received');
                break;
            case 'agent_status':
                this.onAgentStatus(message.data);
                break;
            case 'metrics_update':
                this.onMetricsUpdate(message.data);
                break;
            // Handle other message types
        }
    }
}

// --- the test harness around the seed's class ---------------------------------------------
const [url, token, eventType, countArg] = process.argv.slice(2);
const wanted = parseInt(countArg, 10);
let received = 0;

class TestClient extends WebSocketClient {
    handleMessage(message) {
        super.handleMessage(message);
        process.stdout.write(JSON.stringify({ received: message }) + '\n');
        if (message.type === 'connection_established') {
            this.ws.send(JSON.stringify({ type: 'subscribe', data: { events: [eventType] } }));
        } else if (message.type === 'subscription_confirmed') {
            process.stdout.write(JSON.stringify({ ready: true }) + '\n');
        } else if (message.type === eventType) {
            received++;
            if (received >= wanted) {
                this.maxReconnectAttempts = 0;
                this.ws.close(1000, 'done');
                process.exit(0);
            }
        }
    }
    onAgentStatus(data) {}
    onMetricsUpdate(data) {}
}

new TestClient(url, token).connect();
setTimeout(() => { console.error('timed out'); process.exit(2); }, 30000);
