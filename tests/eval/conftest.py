import pytest
from chat_server import ChatServer


@pytest.fixture
def server():
    """``server(script)`` starts a local chat-completions server; all are closed afterwards."""
    made = []

    def make(script):
        made.append(ChatServer(script))
        return made[-1]

    yield make
    for s in made:
        s.close()
