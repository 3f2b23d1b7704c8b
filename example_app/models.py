"""The example backend's own data: users and their App Store subscriptions.

These tables live in the example's own SQLite database, on their own
``MetaData``: flask-retention keeps its tables apart (``retention_*``) and
never touches these. A real app already has tables like these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship

MONTHLY = "com.example.monthly"
YEARLY = "com.example.yearly"


class Base(DeclarativeBase):
    """The example's declarative base, with a ``MetaData`` of its own."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="user")


class Subscription(Base):
    """One App Store subscription, found by Apple's original transaction ID."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    original_transaction_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    product_id: Mapped[str] = mapped_column(sa.String(200))
    plan: Mapped[str] = mapped_column(sa.String(20))  # "monthly" or "yearly"
    tenure_months: Mapped[int]
    last_active_on: Mapped[date]
    user: Mapped[User] = relationship(back_populates="subscriptions")

    def lapsed(self, today: date, days: int = 30) -> bool:
        """Whether the user has not opened the app for more than ``days`` days."""
        return (today - self.last_active_on).days > days


@dataclass(frozen=True)
class Sample:
    """One seeded subscriber, and what the example's selector offers them."""

    original_transaction_id: str
    name: str
    email: str
    plan: str
    tenure_months: int
    days_since_active: int
    expect: str


#: The seeded subscribers; ``expect`` names the rule the selector applies on the day they
#: are added (``last_active_on`` is fixed then, so they lapse as days go by).
SAMPLES: tuple[Sample, ...] = (
    Sample("1000000000000001", "Ada", "ada@example.com", "monthly", 18, 1, "SwitchPlan"),
    Sample("1000000000000002", "Ben", "ben@example.com", "monthly", 4, 45, "PromotionalOffer"),
    Sample("1000000000000003", "Chloé", "chloe@example.com", "yearly", 26, 0, "Message"),
    Sample("1000000000000004", "Dara", "dara@example.com", "monthly", 2, 3, "Message"),
)


def create_engine(url: str) -> sa.Engine:
    """The example's engine; SQLite waits for a lock instead of failing at once."""
    return sa.create_engine(url, connect_args={"timeout": 15} if url.startswith("sqlite") else {})


def seed(engine: sa.Engine, today: date | None = None) -> int:
    """Create the tables and add the sample subscribers that are missing; how many were added.

    Safe to repeat: a second call adds nothing. ``last_active_on`` is set
    relative to ``today`` when a subscriber is first added.
    """
    today = today or date.today()
    Base.metadata.create_all(engine)
    added = 0
    with Session(engine) as session, session.begin():
        known = set(session.scalars(sa.select(Subscription.original_transaction_id)))
        for sample in SAMPLES:
            if sample.original_transaction_id in known:
                continue
            user = session.scalar(sa.select(User).where(User.email == sample.email))
            if user is None:
                user = User(email=sample.email, name=sample.name)
                session.add(user)
            session.add(
                Subscription(
                    user=user,
                    original_transaction_id=sample.original_transaction_id,
                    product_id=MONTHLY if sample.plan == "monthly" else YEARLY,
                    plan=sample.plan,
                    tenure_months=sample.tenure_months,
                    last_active_on=today - timedelta(days=sample.days_since_active),
                )
            )
            added += 1
    return added


def all_subscriptions(engine: sa.Engine) -> list[Subscription]:
    """Every subscription with its user, in original transaction ID order."""
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.scalars(
                sa.select(Subscription)
                .options(joinedload(Subscription.user))
                .order_by(Subscription.original_transaction_id)
            )
        )


def find_subscription(engine: sa.Engine, original_transaction_id: str) -> Subscription | None:
    """The subscription with Apple's ``original_transaction_id``, or ``None``."""
    with Session(engine, expire_on_commit=False) as session:
        return session.scalar(
            sa.select(Subscription).where(
                Subscription.original_transaction_id == original_transaction_id
            )
        )
